// Command pyext is cmd/caddy built as the CPython extension module
// vivarium._caddy of the wheel (go build -buildmode=c-shared; see
// scripts/wheel.py). The python process that imports it hosts Caddy: its main
// interpreter is the one Vivarium adopts, and the module does not link
// libpython, whose symbols come from that process as for any extension module.
package main

/*
#include <stdlib.h>
*/
import "C"

import (
	"os"
	"slices"
	"unsafe"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/vivarium-dev/vivarium/plugin"
)

// vvCaddyMain runs the caddy command with the given argv (argv[0] is what
// `caddy start` runs again) and ends the process, as bin/caddy would when its
// main returns: Python is never finalized under the apps' interpreters.
//
//export vvCaddyMain
func vvCaddyMain(argc C.int, argv **C.char) {
	args := make([]string, int(argc))
	for i, arg := range unsafe.Slice(argv, int(argc)) {
		args[i] = C.GoString(arg)
	}
	// Go took the process's own argv when python loaded us; when it ends with
	// ours (vivarium's `python -I -S -X utf8 .../_isolated.py PROGRAM ARGS...`),
	// its start is how children of this program run it again.
	if n := len(os.Args) - len(args); n >= 0 && slices.Equal(os.Args[n:], args) {
		plugin.SetSelfArgv(os.Args[:n+1])
	}
	os.Args = args
	caddycmd.Main()
	os.Exit(0)
}

// main is never called: a c-shared build needs one.
func main() {}
