package plugin

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// An app's own environment variables (`env`, `env_file`) are written into its
// interpreter's os.environ only, without putenv: each interpreter imports its
// own os module, so other apps and the process environment stay as they were.

// validEnvName reports whether name is a portable environment variable name.
func validEnvName(name string) bool {
	if name == "" || ('0' <= name[0] && name[0] <= '9') {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

func checkEnvVar(name, value string) error {
	if !validEnvName(name) {
		return fmt.Errorf("invalid variable name %q: use letters, digits and _, not starting with a digit", name)
	}
	if strings.IndexByte(value, 0) >= 0 {
		return fmt.Errorf("the value of %s holds a NUL byte", name)
	}
	return nil
}

// appEnv merges the env_file's variables with env's, env winning. A relative
// env_file is taken from the app's working_dir, which is already absolute.
func appEnv(env map[string]string, envFile, workingDir string) (map[string]string, error) {
	merged := map[string]string{}
	if envFile != "" {
		path := envFile
		if !filepath.IsAbs(path) {
			path = filepath.Join(workingDir, path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("env_file: %v", err)
		}
		vars, err := parseDotenv(data)
		if err != nil {
			return nil, fmt.Errorf("env_file %s:%v", path, err)
		}
		for k, v := range vars {
			merged[k] = v
		}
	}
	for k, v := range env {
		if err := checkEnvVar(k, v); err != nil {
			return nil, fmt.Errorf("env: %v", err)
		}
		merged[k] = v
	}
	return merged, nil
}

// parseDotenv reads the usual dotenv syntax: NAME=value lines, optionally
// after `export`; blank lines and lines starting with # are skipped. A value
// in single quotes is taken as it is; in double quotes, \n \r \t \" \\ and \$
// are unescaped; an unquoted value ends at " #" (a comment) and is trimmed.
// Nothing is expanded: ${OTHER} stays as written. Errors name the line as
// ":N: why", for the caller to prefix with the file name.
func parseDotenv(data []byte) (map[string]string, error) {
	vars := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if n == 1 {
			line = strings.TrimPrefix(line, "\ufeff")
		}
		if line == "" || line[0] == '#' {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "export"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			line = strings.TrimSpace(rest)
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%d: want NAME=value, got %q", n, line)
		}
		name = strings.TrimSpace(name)
		value, err := dotenvValue(strings.TrimSpace(value))
		if err != nil {
			return nil, fmt.Errorf("%d: %s: %v", n, name, err)
		}
		if err := checkEnvVar(name, value); err != nil {
			return nil, fmt.Errorf("%d: %v", n, err)
		}
		vars[name] = value
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("0: %v", err)
	}
	return vars, nil
}

func dotenvValue(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	switch q := v[0]; q {
	case '\'', '"':
		end := closingQuote(v, q)
		if end < 0 {
			return "", fmt.Errorf("the value's %c quote is not closed on its line", q)
		}
		if tail := strings.TrimSpace(v[end+1:]); tail != "" && tail[0] != '#' {
			return "", fmt.Errorf("unexpected %q after the quoted value", tail)
		}
		if q == '\'' {
			return v[1:end], nil
		}
		return unescapeDouble(v[1:end]), nil
	}
	if i := strings.Index(v, " #"); i >= 0 {
		v = v[:i]
	}
	if i := strings.Index(v, "\t#"); i >= 0 {
		v = v[:i]
	}
	return strings.TrimSpace(v), nil
}

// closingQuote is the index of the quote q that closes v (v[0] is q), or -1.
func closingQuote(v string, q byte) int {
	for i := 1; i < len(v); i++ {
		switch {
		case q == '"' && v[i] == '\\':
			i++
		case v[i] == q:
			return i
		}
	}
	return -1
}

func unescapeDouble(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case '"', '\\', '$':
			b.WriteByte(s[i])
		default:
			b.WriteByte('\\')
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
