package plugin

import (
	"context"
	"os"
	"os/exec"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// selfArgv runs this program again, up to where a caddy command line starts:
// empty for bin/caddy, which is its own executable. In the wheel the program
// is a python process, and cmd/pyext sets the python command line that
// reaches Caddy (SetSelfArgv).
var selfArgv []string

// SetSelfArgv is for cmd/pyext: argv[0] and the arguments that, followed by a
// caddy command line, run this program again.
func SetSelfArgv(argv []string) { selfArgv = append([]string(nil), argv...) }

// selfCommand is this program run again with the caddy command line args, as
// a child process that ctx ends: os.Executable() would be python in the
// wheel. The path is /proc/self/exe, the running executable even when its
// file was replaced.
func selfCommand(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "/proc/self/exe")
	cmd.Args = selfArgs(args...)
	return cmd
}

// selfArgs is the argv that runs this program again with the caddy command
// line args, for a child started from /proc/self/exe.
func selfArgs(args ...string) []string {
	if len(selfArgv) > 0 {
		return append(append([]string(nil), selfArgv...), args...)
	}
	return append([]string{os.Args[0]}, args...)
}

// registerChildCommand adds a caddy command that only this program runs
// itself in a child (selfCommand); it is hidden from caddy help.
func registerChildCommand(name, short string, run func() error) {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  name,
		Short: short,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Hidden = true
			cmd.RunE = func(*cobra.Command, []string) error { return run() }
		},
	})
}
