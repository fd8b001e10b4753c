// Package pyadapters holds the Python code that runs inside each app
// interpreter. It is embedded in the binary, so an installed Caddy needs no
// files besides the apps themselves.
package pyadapters

import (
	"embed"
	"strings"
)

//go:embed *.py
var files embed.FS

// Source is one adapter module: its import name inside the interpreter and its code.
type Source struct {
	Name string
	Code string
}

// Sources returns every adapter module; boot.py becomes "vivarium_boot" and so on.
func Sources() []Source {
	entries, err := files.ReadDir(".")
	if err != nil {
		panic(err) // embedded at build time: cannot fail
	}
	out := make([]Source, 0, len(entries))
	for _, e := range entries {
		code, err := files.ReadFile(e.Name())
		if err != nil {
			panic(err)
		}
		out = append(out, Source{Name: "vivarium_" + strings.TrimSuffix(e.Name(), ".py"), Code: string(code)})
	}
	return out
}
