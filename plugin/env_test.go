package plugin

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDotenvSyntax(t *testing.T) {
	got, err := parseDotenv([]byte("\ufeff# a comment\n\n" +
		"PLAIN=value\n" +
		"export EXPORTED=yes\n" +
		"SPACED = padded value  \n" +
		"COMMENTED=kept # dropped\n" +
		"HASH=a#b\n" +
		"SINGLE='lit $X \\n # kept'\n" +
		"DOUBLE=\"line\\nnext \\\"q\\\" \\\\ \\$HOME\" # dropped\n" +
		"EMPTY=\n" +
		"EQUALS=a=b=c\n" +
		"NOEXPAND=${PLAIN}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"PLAIN":     "value",
		"EXPORTED":  "yes",
		"SPACED":    "padded value",
		"COMMENTED": "kept",
		"HASH":      "a#b",
		"SINGLE":    `lit $X \n # kept`,
		"DOUBLE":    "line\nnext \"q\" \\ $HOME",
		"EMPTY":     "",
		"EQUALS":    "a=b=c",
		"NOEXPAND":  "${PLAIN}",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

func TestDotenvErrorsNameTheLine(t *testing.T) {
	cases := map[string]struct{ input, want string }{
		"no equals":      {"A=1\nJUSTANAME\n", "2: want NAME=value"},
		"bad name":       {"A=1\n\n1BAD=x\n", "3: invalid variable name \"1BAD\""},
		"unclosed quote": {"A=\"open\n", "1: A: the value's \" quote is not closed"},
		"junk after":     {"A='x' y\n", "1: A: unexpected \"y\""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := parseDotenv([]byte(c.input))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestEnvWinsOverEnvFileRelativeToWorkingDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("A=from-file\nB=from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := appEnv(map[string]string{"B": "from-env", "C": "c"}, ".env", dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"A": "from-file", "B": "from-env", "C": "c"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if _, err := appEnv(nil, "missing.env", dir); err == nil || !strings.Contains(err.Error(), "missing.env") {
		t.Fatalf("a missing env_file: got %v", err)
	}
}

func TestCaddyfileReadsTheControls(t *testing.T) {
	p, err := parse(t, `python {
		module_wsgi "main:app"
		env DJANGO_SETTINGS_MODULE site.settings
		env EMPTY ""
		env_file .env
		timeout 10s
		write_timeout 5s
		start_timeout 1m
		max_requests 500
		max_memory 256MiB
	}`)
	if err != nil {
		t.Fatal(err)
	}
	if p.Env["DJANGO_SETTINGS_MODULE"] != "site.settings" || p.Env["EMPTY"] != "" || len(p.Env) != 2 {
		t.Fatalf("env = %v", p.Env)
	}
	if p.EnvFile != ".env" || time.Duration(p.Timeout) != 10*time.Second || time.Duration(p.WriteTimeout) != 5*time.Second ||
		time.Duration(p.StartTimeout) != time.Minute || p.MaxRequests != 500 || p.MaxMemory != 256<<20 {
		t.Fatalf("got %+v", *p)
	}
	for input, want := range map[string]string{
		"env ONLYNAME":     "env takes a name and a value",
		"env 9X y":         "invalid variable name",
		"timeout soon":     "timeout wants a positive duration",
		"timeout -1s":      "timeout wants a positive duration",
		"max_requests 0":   "max_requests",
		"max_memory lots":  "max_memory wants a size",
		"env_file a b":     "env_file takes exactly one value",
		"start_timeout 0s": "start_timeout wants a positive duration",
	} {
		_, err := parse(t, "python {\n module_wsgi main:app\n "+input+"\n}")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", input, err, want)
		}
	}
}
