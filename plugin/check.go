package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

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
interpreter, tries 'isolation shared' (twice in one process, as a reload
would) and then 'isolation main'. Each try runs in a child process, so an
extension module that aborts its interpreter gets a verdict too. Prints the
strongest isolation that works. Exits 0 when 'isolation interpreter' works,
1 when only shared or main does, 2 when the app imports in none.`,
		Flags: func() *flag.FlagSet {
			fs := flag.NewFlagSet("python-check", flag.ExitOnError)
			fs.String("working-dir", ".", "the app's import root")
			fs.String("venv", "", "the app's virtual environment")
			return fs
		}(),
		Func: cmdPythonCheck,
	})
}

// checkReport is what one start of the app found (vivarium_boot._check).
type checkReport struct {
	OK         bool        `json:"ok"`
	Error      string      `json:"error"`
	Refused    string      `json:"refused"` // the extension module that refused the interpreter
	Why        string      `json:"why"`     // why it did: "own-gil", "once", "init" (vivarium_boot.Refusal)
	Extensions []extension `json:"extensions"`
	Interface  string      `json:"interface"` // "wsgi" or "asgi", when it imported
	// Crash is set when the start killed its process; Error then says so
	// and Refused names what was loading.
	Crash *probeCrash `json:"-"`
}

type extension struct {
	Name string `json:"name"`
	File string `json:"file"`
}

type probeResult struct {
	Name    string `json:"name"`
	OK      bool   `json:"ok"`
	Error   string `json:"error"`
	Crashed bool   `json:"-"` // loading it killed the probe's process
}

// Verdict is where an app can run, each isolation tried in a child process.
type Verdict struct {
	Own      checkReport  // isolation interpreter
	Shared   *checkReport // isolation shared, tried when Own failed for its isolation
	Reloaded *checkReport // shared started again in the same process, as on reload
	Main     *checkReport // isolation main, tried when shared does not do
	// Strongest is the strongest isolation that works (isolationInterpreter,
	// isolationShared, isolationMain), or "" when the app starts in none.
	Strongest string
}

// checkIsolation tries the app of cfg (cfg.module, workingDir, venv) in
// isolation interpreter, then shared, then main, each in a child process of
// this binary, and stops at the first that works. An app that fails in its
// own interpreter for another reason than an extension module refusing it
// (or killing it) is not tried further: it fails to import anywhere.
// defaultAttr is the app attribute when cfg.module names none.
func checkIsolation(ctx context.Context, cfg appConfig, defaultAttr string) (Verdict, error) {
	var v Verdict
	own, err := checkStarts(ctx, cfg, defaultAttr, isolationInterpreter, 1)
	if err != nil {
		return v, err
	}
	v.Own = own[0]
	if v.Own.OK {
		v.Strongest = isolationInterpreter
		return v, nil
	}
	if v.Own.Refused == "" && v.Own.Crash == nil {
		return v, nil
	}
	// A reload starts the app in a new interpreter while the process keeps
	// what the old one loaded: some extension modules (PyO3, numpy, Cython)
	// load in only one interpreter per process.
	shared, err := checkStarts(ctx, cfg, defaultAttr, isolationShared, 2)
	if err != nil {
		return v, err
	}
	v.Shared, v.Reloaded = &shared[0], &shared[1]
	if v.Shared.OK && v.Reloaded.OK {
		v.Strongest = isolationShared
		return v, nil
	}
	main, err := checkStarts(ctx, cfg, defaultAttr, isolationMain, 1)
	if err != nil {
		return v, err
	}
	v.Main = &main[0]
	if v.Main.OK {
		v.Strongest = isolationMain
	}
	return v, nil
}

// checkStarts starts the app `starts` times in one child process with the
// given isolation and returns a report for each start; a start that killed
// the child, and those after it, get a report that says so.
func checkStarts(ctx context.Context, cfg appConfig, defaultAttr, isolation string, starts int) ([]checkReport, error) {
	raw, crash, err := runProbe(ctx, probeRequest{
		Kind: "check", Module: cfg.module, DefaultAttr: defaultAttr, WorkingDir: cfg.workingDir,
		Venv: cfg.venv, Env: cfg.controls.env, Isolation: isolationCodes[isolation], Starts: starts,
	})
	if err != nil {
		return nil, err
	}
	out := make([]checkReport, starts)
	for i, r := range raw {
		if err := json.Unmarshal(r, &out[i]); err != nil {
			return nil, fmt.Errorf("probe report: %w", err)
		}
	}
	for i := len(raw); i < starts; i++ {
		out[i] = checkReport{Error: crash.String(), Refused: crash.Module, Crash: crash}
	}
	return out, nil
}

// probeExtensions loads each extension module on its own in an own-GIL
// interpreter of a child process; one that kills the child is reported so,
// and the rest are tried in a new child.
func probeExtensions(ctx context.Context, cfg appConfig, exts []extension) ([]probeResult, error) {
	var results []probeResult
	for len(exts) > 0 {
		list, _ := json.Marshal(exts)
		raw, crash, err := runProbe(ctx, probeRequest{
			Kind: "probe", Module: string(list), WorkingDir: cfg.workingDir, Venv: cfg.venv,
			Isolation: isolationInterpreterCode, Starts: 1,
		})
		if err != nil {
			return nil, err
		}
		if crash == nil {
			var done []probeResult
			if err := json.Unmarshal(raw[0], &done); err != nil {
				return nil, fmt.Errorf("probe report: %w", err)
			}
			return append(results, done...), nil
		}
		at := 0
		for at < len(exts) && exts[at].Name != crash.Module {
			at++
		}
		if at == len(exts) {
			// It died before loading any of them: nothing to tell apart.
			for _, e := range exts {
				results = append(results, probeResult{Name: e.Name, Error: crash.String(), Crashed: true})
			}
			return results, nil
		}
		// The ones before it loaded or were refused without killing the
		// child; their verdicts died with it, so they are tried again.
		results = append(results, probeResult{Name: exts[at].Name, Error: crash.String(), Crashed: true})
		exts = append(exts[:at:at], exts[at+1:]...)
	}
	return results, nil
}

// isolationAdvice says, for the message of an app whose start an extension
// module refused, which isolation works for it, tried in a child process.
// "" when none does or it cannot tell.
func isolationAdvice(cfg appConfig) string {
	defaultAttr := "application"
	if cfg.kind == "asgi" {
		defaultAttr = "app"
	}
	v, err := checkIsolation(context.Background(), cfg, defaultAttr)
	if err != nil || v.Strongest == "" {
		return ""
	}
	advice := fmt.Sprintf("checked in a separate process: use `isolation %s`", v.Strongest)
	switch {
	case v.Strongest == isolationCodeName(cfg.isolation):
		return fmt.Sprintf("checked in a separate process, `isolation %s` works there: another interpreter "+
			"of this process holds an extension module it needs; give the app `isolation main` "+
			"(which reloads in place) or a Caddy process of its own", v.Strongest)
	case v.Strongest == isolationMain && v.Shared != nil && v.Shared.OK:
		return advice + " (with `isolation shared` it starts once, but a reload cannot start it again: " +
			whatFailed(*v.Reloaded) + ")"
	case v.Strongest == isolationMain && v.Shared != nil:
		return advice + " (`isolation shared` fails too: " + whatFailed(*v.Shared) + ")"
	}
	return advice
}

func whatFailed(r checkReport) string {
	if r.Crash != nil {
		return r.Crash.String()
	}
	switch {
	case r.Refused != "" && r.Why == "once":
		return fmt.Sprintf("extension module '%s' loads in only one interpreter per process", r.Refused)
	case r.Refused != "" && r.Why == "init":
		return fmt.Sprintf("the init function of extension module '%s' fails", r.Refused)
	case r.Refused != "":
		return fmt.Sprintf("extension module '%s' refuses it", r.Refused)
	}
	return r.Error
}

func isolationCodeName(code int) string {
	for name, c := range isolationCodes {
		if c == code {
			return name
		}
	}
	return ""
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
	cfg := appConfig{module: fl.Arg(0), workingDir: workingDir, venv: venv}
	ctx := context.Background()
	version, err := pythonVersion()
	if err != nil {
		return 2, err
	}
	v, err := checkIsolation(ctx, cfg, "app")
	if err != nil {
		return 2, err
	}
	out := os.Stdout
	fmt.Fprintf(out, "Python %s\napp %q (working_dir %s", version, cfg.module, workingDir)
	if venv != "" {
		fmt.Fprintf(out, ", venv %s", venv)
	}
	fmt.Fprintln(out, ")")

	if !v.Own.OK && v.Own.Refused == "" && v.Own.Crash == nil {
		// Not a matter of isolation: the app does not import at all.
		fmt.Fprintf(out, "\nthe app fails to import:\n%s\n", v.Own.Error)
		return 2, errors.New("fix the import error first")
	}

	// Each extension the app loads, tried on its own in an own-GIL interpreter.
	exts := v.Own.Extensions
	for _, r := range []*checkReport{v.Shared, v.Main} {
		if r != nil && r.OK {
			exts = r.Extensions
		}
	}
	probes, err := probeExtensions(ctx, cfg, exts)
	if err != nil {
		return 2, err
	}
	printExtensions(out, probes, v.Own)

	fmt.Fprintln(out, "\nisolation:")
	fmt.Fprintf(out, "  interpreter  %s\n", verdict(v.Own))
	if v.Shared != nil {
		if v.Shared.OK && !v.Reloaded.OK {
			fmt.Fprintf(out, "  shared       fails on reload: starts once, but a second interpreter in the process "+
				"cannot start it again: %s\n", v.Reloaded.Error)
		} else {
			fmt.Fprintf(out, "  shared       %s\n", verdict(*v.Shared))
		}
	}
	if v.Main != nil {
		if v.Main.OK {
			fmt.Fprintln(out, "  main         works (one app per process; reloads in place)")
		} else {
			fmt.Fprintf(out, "  main         %s\n", verdict(*v.Main))
		}
	}
	switch v.Strongest {
	case isolationInterpreter:
		fmt.Fprintln(out, "\nstrongest isolation that works: interpreter")
		return 0, nil
	case "":
		fmt.Fprintln(out, "\nno isolation works for this app")
		return 2, fmt.Errorf("%q starts in no isolation", cfg.module)
	}
	fmt.Fprintf(out, "\nstrongest isolation that works: %s\n", v.Strongest)
	// Caddy's command runner exits 0 for status 1 without an error.
	return 1, fmt.Errorf("%q cannot run with isolation interpreter; use isolation %s", cfg.module, v.Strongest)
}

func printExtensions(out io.Writer, probes []probeResult, own checkReport) {
	fmt.Fprintln(out, "\nextension modules the app loads, in an own-GIL interpreter:")
	if len(probes) == 0 && own.Refused == "" {
		fmt.Fprintln(out, "  (none outside the standard library)")
	}
	seenRefused := false
	for _, p := range probes {
		switch {
		case p.OK:
			fmt.Fprintf(out, "  loads    %s\n", p.Name)
		case p.Crashed:
			fmt.Fprintf(out, "  aborts   %s  (%s)\n", p.Name, p.Error)
		default:
			fmt.Fprintf(out, "  refused  %s  (%s)\n", p.Name, p.Error)
		}
		seenRefused = seenRefused || p.Name == own.Refused
	}
	if own.Refused != "" && !seenRefused {
		fmt.Fprintf(out, "  refused  %s\n", own.Refused)
	}
}

func verdict(r checkReport) string {
	if r.OK {
		return "works"
	}
	return "fails: " + r.Error
}

// pythonVersion is the version of the Python this binary embeds, like
// "3.14.10 (main, ...)", from starting it here.
func pythonVersion() (string, error) {
	onControlThread(func() {})
	if control.initErr != nil {
		return "", control.initErr
	}
	return control.version, nil
}
