package plugin

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/prometheus/client_golang/prometheus"
)

// Every app has a name: the `app` field of its log entries, the `app` label
// of its metrics and its path in the admin API (/python/apps/<name>). It
// must stay the same across reloads, so that a dashboard or an alert keeps
// following the app, and it is unique within a config.

// validName keeps names usable unescaped in a URL path and readable as a
// label value.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func checkName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("name %q must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// slug turns a site address or matcher into name material: lower case,
// each run of other characters one '-'.
func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_') {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
		} else {
			dash = true
		}
	}
	return strings.Trim(b.String(), ".-_")
}

// defaultName derives a name from the site's first address (scheme left
// out) and the block's matcher token ("/api/*" gives "api", "@admin"
// gives "admin"): "localhost-8080-api". Both stay put while a config is
// edited and reloaded; two blocks that share them need a `name`.
func defaultName(site, matcher string) string {
	if i := strings.Index(site, "://"); i >= 0 {
		site = site[i+3:]
	}
	parts := []string{}
	for _, s := range []string{slug(site), slug(matcher)} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return clip(strings.Join(parts, "-"))
}

// clip makes a slug a valid name: at most 64 characters, never empty.
func clip(name string) string {
	if len(name) > 64 {
		name = strings.TrimRight(name[:64], ".-_")
	}
	if name == "" {
		name = "app"
	}
	return name
}

// siteAddress is the first address of the site block a directive is in.
// httpcaddyfile keeps the block in an unexported field of the Helper and
// offers no accessor for its keys; reading it by reflection is the one way
// to name an app after its site. Should a Caddy release rename the field,
// the name falls back to the matcher alone and TestDefaultNameFromSite
// fails.
func siteAddress(h httpcaddyfile.Helper) string {
	keys := reflect.ValueOf(h).FieldByName("parentBlock").FieldByName("Keys")
	if !keys.IsValid() || keys.Kind() != reflect.Slice || keys.Len() == 0 {
		return ""
	}
	text := keys.Index(0).FieldByName("Text")
	if !text.IsValid() || text.Kind() != reflect.String {
		return ""
	}
	return text.String()
}

// fallbackName is the name of an app configured in JSON without one: from
// its mount point, else its module.
func (p *Python) fallbackName() string {
	if s := slug(p.ScriptName); s != "" {
		return clip(s)
	}
	return clip(slug(p.module()))
}

// configNames records the names taken in each loaded config, keyed by the
// config's metrics registry: Caddy makes one per config load, and every
// module of that config sees the same one.
var configNames struct {
	sync.Mutex
	byConfig map[*prometheus.Registry]map[string]bool
}

func claimName(config *prometheus.Registry, name string) error {
	configNames.Lock()
	defer configNames.Unlock()
	taken := configNames.byConfig[config]
	if taken[name] {
		return fmt.Errorf("two python apps in this config are named %q; names must be unique: give one of them "+
			"its own `name` (a Caddyfile block is named after its site and matcher unless it has one)", name)
	}
	if configNames.byConfig == nil {
		configNames.byConfig = map[*prometheus.Registry]map[string]bool{}
	}
	if taken == nil {
		taken = map[string]bool{}
		configNames.byConfig[config] = taken
	}
	taken[name] = true
	return nil
}

func releaseName(config *prometheus.Registry, name string) {
	configNames.Lock()
	defer configNames.Unlock()
	taken := configNames.byConfig[config]
	delete(taken, name)
	if len(taken) == 0 {
		delete(configNames.byConfig, config)
	}
}

// enclosingMatcher is, for a block without a matcher of its own, the path
// of the handle_path it sits in: `handle_path /api/* { python {...} }` is
// named after /api/*. The nested directive's Helper holds only its own
// tokens; the site block holds them all, so the enclosing directive is the
// segment that has this block's token at file:line (read by reflection, as
// siteAddress reads the site's keys). `handle` and `route` took their
// matcher token out of those tokens as they parsed it, so blocks under them
// are named after the site alone.
func enclosingMatcher(h httpcaddyfile.Helper, file string, line int) string {
	segments := reflect.ValueOf(h).FieldByName("parentBlock").FieldByName("Segments")
	if !segments.IsValid() || segments.Kind() != reflect.Slice {
		return ""
	}
	text := func(tok reflect.Value) string { return tok.FieldByName("Text").String() }
	at := func(tok reflect.Value) (string, int64) {
		return tok.FieldByName("File").String(), tok.FieldByName("Line").Int()
	}
	for i := 0; i < segments.Len(); i++ {
		seg := segments.Index(i)
		for j := 1; j < seg.Len(); j++ {
			if f, l := at(seg.Index(j)); f != file || l != int64(line) || text(seg.Index(j)) != "python" {
				continue
			}
			_, first := at(seg.Index(0))
			if _, second := at(seg.Index(1)); second != first {
				return "" // the enclosing directive has no matcher either
			}
			if m := text(seg.Index(1)); strings.HasPrefix(m, "/") || strings.HasPrefix(m, "@") {
				return m
			}
			return ""
		}
	}
	return ""
}
