// Package vivarium serves Python web apps from PEP 684 subinterpreters inside
// Caddy. Importing it registers the `python` handler, so that
//
//	xcaddy build --with github.com/vivarium-dev/vivarium
//
// builds a Caddy with it. The code lives in plugin/ (Go), runtime/ (C) and
// pyadapters/ (Python).
package vivarium

import _ "github.com/vivarium-dev/vivarium/plugin"
