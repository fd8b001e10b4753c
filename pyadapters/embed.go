// Package pyadapters holds the Python code that runs inside each app
// interpreter. It is embedded in the binary, so an installed Caddy needs no
// files besides the apps themselves.
package pyadapters

import "embed"

//go:embed *.py
var files embed.FS

// Source is one adapter module: its import name inside the interpreter and its code.
type Source struct {
	Name string
	Code string
}

// Sources returns the adapter modules an interpreter of the given kind needs:
// vivarium_boot and, for "wsgi" or "asgi", that adapter (wsgi.py becomes
// "vivarium_wsgi"). Only those: the ASGI adapter's asyncio alone would add
// about 9 MB to every WSGI interpreter.
func Sources(kind string) []Source {
	out := []Source{load("boot")}
	if kind == "wsgi" || kind == "asgi" {
		out = append(out, load(kind))
	}
	return out
}

// Main returns vivarium_main, run once in the main interpreter at start-up.
func Main() Source {
	return load("main")
}

func load(name string) Source {
	code, err := files.ReadFile(name + ".py")
	if err != nil {
		panic(err) // embedded at build time: cannot fail
	}
	return Source{Name: "vivarium_" + name, Code: string(code)}
}
