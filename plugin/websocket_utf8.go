package plugin

import "unicode/utf8"

// utf8Stream checks text that arrives in pieces (frames, or reads of a
// compressed message), where a piece may end inside a character. RFC 6455
// wants an endpoint to fail a connection as soon as the bytes can no longer
// be valid UTF-8, not only once the message is complete, so each piece is
// checked as it comes.
type utf8Stream struct {
	tail [utf8.UTFMax]byte // the start of a character the last piece cut off
	n    int
}

// write reports whether p continues valid UTF-8.
func (s *utf8Stream) write(p []byte) bool {
	for s.n > 0 && len(p) > 0 {
		s.tail[s.n] = p[0]
		s.n++
		p = p[1:]
		// FullRune is false only for a valid start of a longer character.
		if utf8.FullRune(s.tail[:s.n]) {
			if _, size := utf8.DecodeRune(s.tail[:s.n]); size != s.n {
				return false
			}
			s.n = 0
		}
	}
	if len(p) == 0 {
		return true
	}
	cut := len(p)
	for i := len(p) - 1; i >= 0 && i >= len(p)-utf8.UTFMax; i-- {
		if utf8.RuneStart(p[i]) {
			if !utf8.FullRune(p[i:]) {
				cut = i
			}
			break
		}
	}
	if !utf8.Valid(p[:cut]) {
		return false
	}
	s.n = copy(s.tail[:], p[cut:])
	return true
}

// complete reports whether the text so far ends on a whole character.
func (s *utf8Stream) complete() bool {
	return s.n == 0
}
