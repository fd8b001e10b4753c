//go:build vivarium_hashes

/* Only in a bin/caddy that links a libpython which calls hash functions it
 * does not hold: scripts/link-flags.py sets the tag (runtime/hashes.c). */
#include "../runtime/hashes.c"
