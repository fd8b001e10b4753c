package plugin

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// `watch [GLOB ...]` restarts one app (see restart.go) when a file under its
// working_dir that matches a glob changes. Globs without a slash match a
// file's name in any directory; with a slash, its path from working_dir,
// where ** spans directories.

// defaultWatchGlobs is what `watch` alone watches.
var defaultWatchGlobs = []string{"*.py"}

// watchDebounce gathers the events of one save (editors write a temporary
// file, rename it, touch it again) and of a checkout into one restart.
const watchDebounce = 50 * time.Millisecond

// restartWatch is the reason of a restart watch made, for the app's metrics.
const restartWatch = "watch"

// watcher watches one app's working_dir and restarts the app on a change.
type watcher struct {
	fs     *fsnotify.Watcher
	root   string
	globs  []string
	skip   map[string]bool // directories never watched: the app's venv
	app    *Python
	done   chan struct{}
	exited chan struct{}
}

// unmarshalWatch reads `watch [GLOB ...]` (and caddy-snake's `autoreload`,
// which takes none).
func (p *Python) unmarshalWatch(d *caddyfile.Dispenser) error {
	name := d.Val()
	globs := d.RemainingArgs()
	if name == "autoreload" && len(globs) > 0 {
		return d.Errf("autoreload takes no values; use watch <glob> ... to choose the files")
	}
	for _, g := range globs {
		if _, err := path.Match(strings.ReplaceAll(g, "**", "*"), ""); err != nil {
			return d.Errf("watch: bad glob %q: %v", g, err)
		}
	}
	if len(globs) == 0 {
		globs = defaultWatchGlobs
	}
	p.Watch = append(p.Watch, globs...)
	return nil
}

// watchApp starts watching p's working_dir, once p serves.
func watchApp(p *Python) (*watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	w := &watcher{
		fs:     fw,
		root:   p.WorkingDir,
		globs:  p.Watch,
		skip:   map[string]bool{},
		app:    p,
		done:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	if p.Venv != "" {
		w.skip[filepath.Clean(p.Venv)] = true
	}
	if err := w.addTree(w.root); err != nil {
		fw.Close()
		return nil, err
	}
	go w.run()
	return w, nil
}

// skipDir tells directories whose changes are never the app's code: hidden
// ones (.git, .venv), caches, virtualenvs.
func (w *watcher) skipDir(dir string, name string) bool {
	if dir == w.root {
		return false
	}
	if w.skip[dir] || strings.HasPrefix(name, ".") || name == "__pycache__" || name == "node_modules" {
		return true
	}
	_, err := os.Stat(filepath.Join(dir, "pyvenv.cfg"))
	return err == nil
}

// addTree watches dir and every directory below it (inotify watches one
// directory at a time).
func (w *watcher) addTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if p == dir {
				return err
			}
			return nil // vanished meanwhile
		}
		if !e.IsDir() {
			return nil
		}
		if w.skipDir(p, e.Name()) {
			return filepath.SkipDir
		}
		if err := w.fs.Add(p); err != nil && p == dir {
			return err
		}
		return nil
	})
}

// matches tells whether the file at p (absolute) is one the globs name.
func (w *watcher) matches(p string) bool {
	rel, err := filepath.Rel(w.root, p)
	if err != nil || strings.HasPrefix(rel, "..") {
		return false
	}
	rel = filepath.ToSlash(rel)
	for _, g := range w.globs {
		if globMatch(g, rel) {
			return true
		}
	}
	return false
}

// globMatch matches a slash-separated relative path: a glob without a slash
// against the last element, else element by element with ** for any number
// of directories.
func globMatch(glob, rel string) bool {
	if !strings.Contains(glob, "/") {
		ok, _ := path.Match(glob, path.Base(rel))
		return ok
	}
	return matchParts(strings.Split(glob, "/"), strings.Split(rel, "/"))
}

func matchParts(glob, parts []string) bool {
	for len(glob) > 0 {
		if glob[0] == "**" {
			for i := 0; i <= len(parts); i++ {
				if matchParts(glob[1:], parts[i:]) {
					return true
				}
			}
			return false
		}
		if len(parts) == 0 {
			return false
		}
		if ok, _ := path.Match(glob[0], parts[0]); !ok {
			return false
		}
		glob, parts = glob[1:], parts[1:]
	}
	return len(parts) == 0
}

func (w *watcher) run() {
	defer close(w.exited)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var changed string
	for {
		select {
		case <-w.done:
			timer.Stop()
			return
		case ev, ok := <-w.fs.Events:
			if !ok {
				return
			}
			if ev.Has(fsnotify.Create) {
				if st, err := os.Stat(ev.Name); err == nil && st.IsDir() {
					if !w.skipDir(ev.Name, filepath.Base(ev.Name)) {
						_ = w.addTree(ev.Name)
					}
					continue
				}
			}
			if ev.Op == fsnotify.Chmod || !w.matches(ev.Name) {
				continue
			}
			if changed == "" {
				changed = ev.Name
			}
			forgetBytecode(ev.Name)
			timer.Reset(watchDebounce)
		case err, ok := <-w.fs.Errors:
			if !ok {
				return
			}
			w.app.logger.Warn("watch: file events may have been missed", zap.Error(err))
		case <-timer.C:
			file := changed
			changed = ""
			// The start runs here, so events during it queue up and lead
			// to one more restart after it; the old instance drains
			// meanwhile, on its own.
			w.app.logger.Info("file changed; restarting the app: new interpreters first, then the old ones drain",
				zap.String("changed", file))
			w.restart(file)
		}
	}
}

// restart restarts the app for a change to file. A block with placeholders
// restarts each of its apps in turn.
func (w *watcher) restart(file string) {
	var err error
	if w.app.dynamic != nil {
		_, err = w.app.restart(restartWatch)
	} else {
		var drain func() restartResult
		if _, drain, err = w.app.replace(restartWatch); err == nil {
			if w.app.app.Load().cfg.isolation == isolationCodes[isolationMain] {
				// Its next start re-imports the app's modules in the main
				// interpreter: not while the old instance still ends there.
				drain()
			} else {
				go drain()
			}
		}
	}
	if err != nil && !errors.Is(err, errStopped) {
		w.app.logger.Error("restart failed; the running code keeps serving",
			zap.String("changed", file), zap.Error(err))
	}
}

// close stops watching; a restart in progress finishes first.
func (w *watcher) close() {
	if w == nil {
		return
	}
	close(w.done)
	w.fs.Close()
	<-w.exited
}

// forgetBytecode removes the cached bytecode of a changed module. Python
// trusts a .pyc whose recorded source mtime (in whole seconds) and size
// match, so an edit within the same second that keeps the size would import
// the old code.
func forgetBytecode(file string) {
	if filepath.Ext(file) != ".py" {
		return
	}
	stem := strings.TrimSuffix(filepath.Base(file), ".py")
	cached, _ := filepath.Glob(filepath.Join(filepath.Dir(file), "__pycache__", stem+".*.pyc"))
	for _, c := range cached {
		_ = os.Remove(c)
	}
}
