package plugin

/*
#include <stdlib.h>
#include "vivarium.h"
*/
import "C"

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "python-check",
		Usage: "<module:attr> [--working-dir <path>] [--venv <path>]",
		Short: "Tells which isolation a Python app can run in",
		Long: `
Imports the app in a fresh own-GIL interpreter, as 'isolation interpreter'
would, and reports each extension module the app loads (outside the standard
library) and whether it loads there. When the app does not load in its own
interpreter, tries 'isolation shared'. Prints the strongest isolation that
works. Exits 0 when 'isolation interpreter' works, 1 otherwise.`,
		Flags: func() *flag.FlagSet {
			fs := flag.NewFlagSet("python-check", flag.ExitOnError)
			fs.String("working-dir", ".", "the app's import root")
			fs.String("venv", "", "the app's virtual environment")
			return fs
		}(),
		Func: cmdPythonCheck,
	})
}

type checkReport struct {
	OK         bool   `json:"ok"`
	Error      string `json:"error"`
	Refused    string `json:"refused"`
	Extensions []struct {
		Name string `json:"name"`
		File string `json:"file"`
	} `json:"extensions"`
}

type probeResult struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

// runReport boots one interpreter in a reporting kind and decodes its JSON report.
func runReport(cfg appConfig, into any) error {
	in, err := newInterpreter(cfg, 0, 0)
	if err != nil {
		return err
	}
	var report string
	onControlThread(func() {
		s := C.vv_interp_report(in)
		report = C.GoString(s)
		C.free(unsafe.Pointer(s))
		C.vv_interp_end(in)
	})
	return json.Unmarshal([]byte(report), into)
}

func cmdPythonCheck(fl caddycmd.Flags) (int, error) {
	if fl.Arg(0) == "" || fl.NArg() != 1 {
		return 2, errors.New(`give the app as one argument, like: caddy python-check "main:app" --venv ./venv`)
	}
	workingDir, err := filepath.Abs(fl.String("working-dir"))
	if err != nil {
		return 2, err
	}
	venv := fl.String("venv")
	if venv != "" {
		if venv, err = filepath.Abs(venv); err != nil {
			return 2, err
		}
	}
	base := appConfig{kind: "check", module: fl.Arg(0), workingDir: workingDir, venv: venv}
	out := os.Stdout

	own := checkReport{}
	if err := runReport(base, &own); err != nil {
		return 2, err
	}
	fmt.Fprintf(out, "Python %s\napp %q (working_dir %s", control.version, base.module, workingDir)
	if venv != "" {
		fmt.Fprintf(out, ", venv %s", venv)
	}
	fmt.Fprintln(out, ")")

	if !own.OK && own.Refused == "" {
		// Not a matter of isolation: the app does not import at all.
		fmt.Fprintf(out, "\nthe app fails to import:\n%s\n", own.Error)
		return 2, errors.New("fix the import error first")
	}
	exts := own.Extensions
	shared, reloaded := checkReport{}, checkReport{}
	if !own.OK {
		sharedCfg := base
		sharedCfg.isolation = isolationCodes[isolationShared]
		if err := runReport(sharedCfg, &shared); err != nil {
			return 2, err
		}
		if shared.OK {
			exts = shared.Extensions
			// A reload starts the app in a new interpreter: some extensions
			// (PyO3, numpy, Cython) load in only one per process.
			if err := runReport(sharedCfg, &reloaded); err != nil {
				return 2, err
			}
		}
	}

	// Each extension the app loads, tried on its own in an own-GIL interpreter.
	var probes []probeResult
	if len(exts) > 0 {
		list, _ := json.Marshal(exts)
		probeCfg := base
		probeCfg.kind, probeCfg.module = "probe", string(list)
		if err := runReport(probeCfg, &probes); err != nil {
			return 2, err
		}
	}
	fmt.Fprintln(out, "\nextension modules the app loads, in an own-GIL interpreter:")
	if len(probes) == 0 && own.Refused == "" {
		fmt.Fprintln(out, "  (none outside the standard library)")
	}
	seenRefused := false
	for _, p := range probes {
		if p.OK {
			fmt.Fprintf(out, "  loads    %s\n", p.Name)
		} else {
			fmt.Fprintf(out, "  refused  %s  (%s)\n", p.Name, p.Error)
		}
		seenRefused = seenRefused || p.Name == own.Refused
	}
	if own.Refused != "" && !seenRefused {
		fmt.Fprintf(out, "  refused  %s\n", own.Refused)
	}

	fmt.Fprintln(out, "\nisolation:")
	fmt.Fprintf(out, "  interpreter  %s\n", verdict(own))
	if !own.OK {
		switch {
		case shared.OK && !reloaded.OK:
			fmt.Fprintf(out, "  shared       fails on reload: starts once, but a second interpreter in the process "+
				"cannot load it again: %s\n", reloaded.Error)
		default:
			fmt.Fprintf(out, "  shared       %s\n", verdict(shared))
		}
		fmt.Fprintln(out, "  main         works for any app that imports in Python itself (one app per process; reloads in place)")
	}
	strongest := isolationMain
	switch {
	case own.OK:
		fmt.Fprintln(out, "\nstrongest isolation that works: interpreter")
		return 0, nil
	case shared.OK && reloaded.OK:
		strongest = isolationShared
		fmt.Fprintln(out, "\nstrongest isolation that works: shared")
	default:
		fmt.Fprintln(out, "\nstrongest isolation that works: main")
	}
	// Caddy's command runner exits 0 for status 1 without an error.
	return 1, fmt.Errorf("%q cannot run with isolation interpreter; use isolation %s", base.module, strongest)
}

func verdict(r checkReport) string {
	if r.OK {
		return "works"
	}
	return "fails: " + r.Error
}
