package plugin

/*
#include <stdlib.h>
#include "vivarium.h"
*/
import "C"

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Probing an app in a child process: this binary, re-executed as the hidden
// command `python-probe`, starts the app in a reporting interpreter and says
// what it found. An extension module that aborts its interpreter (CPython
// 3.13.0 did, docs/python-versions.md) takes down only the child, and the
// parent still has a verdict: what was loading when the child died.

func init() {
	registerChildCommand("python-probe", "Starts a Python app for python-check, in a child process (internal)", runProbeChild)
}

// probeRequest is what the parent hands the child on stdin.
type probeRequest struct {
	Kind        string `json:"kind"` // "check": import the app; "probe": load each extension file alone
	Module      string `json:"module"`
	DefaultAttr string `json:"default_attr"`
	WorkingDir  string `json:"working_dir"`
	Venv        string `json:"venv"`
	// Env is the app's own environment (env, env_file), which its import may read.
	Env       map[string]string `json:"env,omitempty"`
	Isolation int               `json:"isolation"` // VV_ISOLATION_*
	// Starts is how many times the app is started in a row, each in a new
	// interpreter of the same process (the first ended before the next), as
	// a reload would; some extension modules load once per process.
	Starts int `json:"starts"`
}

// probeLine is one line the child writes to the report pipe.
type probeLine struct {
	Start   *int            `json:"start,omitempty"`   // a start begins
	Loading string          `json:"loading,omitempty"` // an extension module is about to load
	Loaded  string          `json:"loaded,omitempty"`  // it loaded
	Failed  string          `json:"failed,omitempty"`  // it raised instead
	Report  json.RawMessage `json:"report,omitempty"`  // a start's report
	Error   string          `json:"error,omitempty"`   // the child could not start Python at all
}

// probeCrash says how a child died, loading what.
type probeCrash struct {
	// Module is the extension module that was loading, or else the last one
	// that failed to load (a crash may come when its error is cleaned up, as
	// on 3.13.0); "" when neither.
	Module  string
	Loading bool   // it died while Module was loading
	App     string // the app's module, blamed when no extension module can be
	How     string // "SIGABRT", "exit status 2", "no verdict within 2m0s"
	Said    string // its last words on stderr, like glibc's "free(): invalid pointer"
}

func (c *probeCrash) String() string {
	what := fmt.Sprintf("importing '%s'", c.App)
	switch {
	case c.App == "" && c.Module == "":
		what = "starting the interpreter"
	case c.Module != "" && c.Loading:
		what = "importing " + c.Module
	case c.Module != "":
		what = fmt.Sprintf("importing '%s' (after extension module %s failed to load)", c.App, c.Module)
	}
	said := ""
	if c.Said != "" {
		said = "; it said: " + c.Said
	}
	switch {
	case strings.HasPrefix(c.How, "SIG"):
		return fmt.Sprintf("%s aborted the interpreter, and its process with it (%s%s)", what, c.How, said)
	case strings.HasPrefix(c.How, "no verdict"):
		return fmt.Sprintf("%s did not finish: %s", what, c.How)
	}
	return fmt.Sprintf("%s ended its process (%s%s)", what, c.How, said)
}

// probeTimeout bounds one child: an app whose import hangs gets a verdict too.
const probeTimeout = 2 * time.Minute

// reportFD is where the child finds the report pipe (os/exec's first ExtraFiles).
const reportFD = 3

// runProbe runs req in a child process and returns the report of each start
// that finished; crash is set when the child died before the last one did.
func runProbe(ctx context.Context, req probeRequest) (reports []json.RawMessage, crash *probeCrash, err error) {
	in, err := json.Marshal(req)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	cmd := selfCommand(ctx, "python-probe")
	cmd.Stdin = bytes.NewReader(in)
	stderr := &tailBuffer{max: 64 << 10}
	cmd.Stderr = stderr
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, nil, fmt.Errorf("cannot start a probe process: %w", err)
	}
	w.Close()
	loading, failed, childErr := "", "", ""
	lines := bufio.NewScanner(r)
	lines.Buffer(make([]byte, 64<<10), 64<<20)
	for lines.Scan() {
		var line probeLine
		if json.Unmarshal(lines.Bytes(), &line) != nil {
			continue
		}
		switch {
		case line.Start != nil:
			loading, failed = "", ""
		case line.Loading != "":
			loading = line.Loading
		case line.Loaded != "":
			loading = ""
		case line.Failed != "":
			loading, failed = "", line.Failed
		case line.Report != nil:
			reports = append(reports, line.Report)
		case line.Error != "":
			childErr = line.Error
		}
	}
	waitErr := cmd.Wait()
	if childErr != "" {
		return nil, nil, errors.New(childErr)
	}
	if len(reports) == req.Starts && waitErr == nil {
		return reports, nil, nil
	}
	app := ""
	if req.Kind == "check" {
		app, _, _ = strings.Cut(req.Module, ":")
	}
	crash = &probeCrash{
		Module: loading, Loading: loading != "", App: app,
		How: exitHow(waitErr, ctx, stderr.String()), Said: lastWords(stderr.String()),
	}
	if loading == "" {
		crash.Module = failed
	}
	return reports, crash, nil
}

// exitHow says how the child ended. A fatal signal in C code reaches Go's
// handler, which prints "SIGABRT: abort" and exits with status 2.
func exitHow(err error, ctx context.Context, stderr string) string {
	if ctx.Err() != nil {
		return fmt.Sprintf("no verdict within %s", probeTimeout)
	}
	if m := goSignalLine.FindStringSubmatch(stderr); m != nil {
		return m[1]
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return unix.SignalName(ws.Signal())
		}
		return exit.Error()
	}
	if err != nil {
		return err.Error()
	}
	return "it ended without a report"
}

var goSignalLine = regexp.MustCompile(`(?m)^(SIG[A-Z]+): `)

// lastWords picks what a dying process said before Go's crash dump (which
// starts with "SIGABRT: abort" or "fatal error:"): glibc's and CPython's own
// lines ("free(): invalid pointer", "Fatal Python error: ...").
func lastWords(stderr string) string {
	var said []string
	for _, line := range strings.Split(stderr, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "SIG") && strings.Contains(line, ": ") || strings.HasPrefix(line, "fatal error:") ||
			strings.HasPrefix(line, "goroutine ") {
			break
		}
		if line != "" && !strings.HasPrefix(line, "{") { // Caddy's JSON log lines are not last words
			said = append(said, line)
		}
	}
	if len(said) > 3 {
		said = said[len(said)-3:]
	}
	return strings.Join(said, " / ")
}

// runProbeChild is the child's side: it reads a probeRequest on stdin and
// writes probeLines to the report pipe.
func runProbeChild() error {
	var req probeRequest
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		return fmt.Errorf("python-probe: bad request: %w", err)
	}
	if _, err := unix.FcntlInt(reportFD, unix.F_GETFD, 0); err != nil {
		return fmt.Errorf("python-probe: no report pipe on fd %d: %w", reportFD, err)
	}
	// Not for the programs the app may run: the parent reads the pipe to its end.
	unix.CloseOnExec(reportFD)
	out := os.NewFile(reportFD, "report")
	cfg := appConfig{
		kind: req.Kind, module: req.Module, workingDir: req.WorkingDir, venv: req.Venv,
		controls:  controls{env: req.Env},
		isolation: req.Isolation,
		options:   map[string]any{"progress_fd": reportFD, "default_attr": req.DefaultAttr},
	}
	for i := 0; i < req.Starts; i++ {
		if err := writeLine(out, probeLine{Start: &i}); err != nil {
			return err
		}
		report, err := startReporting(cfg)
		if err != nil {
			// Not a verdict on the app: Python itself would not start.
			return errors.Join(err, writeLine(out, probeLine{Error: err.Error()}))
		}
		if err := writeLine(out, probeLine{Report: json.RawMessage(report)}); err != nil {
			return err
		}
	}
	return out.Close()
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.buf) }

func writeLine(w io.Writer, line probeLine) error {
	b, err := json.Marshal(line)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// startReporting boots one interpreter of a reporting kind ("check" or
// "probe"), ends it, and returns its JSON report.
func startReporting(cfg appConfig) (string, error) {
	in, err := newInterpreter(cfg, 0, 0)
	if err != nil {
		return "", err
	}
	var report string
	onControlThread(func() {
		s := C.vv_interp_report(in)
		report = C.GoString(s)
		C.free(unsafe.Pointer(s))
		C.vv_interp_end(in)
	})
	return report, nil
}
