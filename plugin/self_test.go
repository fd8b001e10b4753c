package plugin

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestSelfHelper is what TestSelfCommandRunsThisProgram starts: it prints its
// arguments and nothing else.
func TestSelfHelper(t *testing.T) {
	if os.Getenv("VIVARIUM_SELF_HELPER") != "1" {
		return
	}
	os.Stdout.WriteString(strings.Join(os.Args[1:], " "))
	os.Exit(0)
}

func TestSelfCommandRunsThisProgram(t *testing.T) {
	cmd := selfCommand(context.Background(), "-test.run=^TestSelfHelper$", "python-probe")
	cmd.Env = append(os.Environ(), "VIVARIUM_SELF_HELPER=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %v", cmd.Args, err)
	}
	if got := string(out); got != "-test.run=^TestSelfHelper$ python-probe" {
		t.Fatalf("the child got %q", got)
	}
}

func TestSelfCommandInTheWheelIsThePythonCommandLine(t *testing.T) {
	defer SetSelfArgv(nil)
	SetSelfArgv([]string{"/venv/bin/python", "-I", "-S", "-X", "utf8", "/venv/vivarium/_isolated.py", "/venv/bin/vivarium"})
	cmd := selfCommand(context.Background(), "python-probe")
	want := []string{"/venv/bin/python", "-I", "-S", "-X", "utf8", "/venv/vivarium/_isolated.py", "/venv/bin/vivarium", "python-probe"}
	if cmd.Path != "/proc/self/exe" || !slices.Equal(cmd.Args, want) {
		t.Fatalf("got %s %v, want /proc/self/exe %v", cmd.Path, cmd.Args, want)
	}
}
