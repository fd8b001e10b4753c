package plugin

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"
	"testing/iotest"
)

func TestUTF8StreamFailsAsSoonAsTextCannotBeValid(t *testing.T) {
	cases := []struct {
		name   string
		pieces []string
		okUpTo int  // pieces accepted before the first refused one (len = all)
		whole  bool // complete after the last piece
	}{
		{"ascii", []string{"hello", " world"}, 2, true},
		{"a character split over three pieces", []string{"\xf0\x9f", "\x98", "\x80!"}, 3, true},
		{"ends inside a character", []string{"ok\xe2\x82"}, 1, false},
		{"U+FFFD itself is valid", []string{"\xef\xbf\xbd"}, 1, true},
		{"above U+10FFFF, fails on its second byte", []string{"a", "\xf4\x90", "\x80\x80"}, 1, false},
		{"a surrogate half, fails on its second byte", []string{"\xed", "\xa0\x80"}, 1, false},
		{"an overlong form", []string{"\xc0\xaf"}, 0, false},
		{"a lone continuation byte", []string{"ab\x80"}, 0, false},
		{"a cut character followed by ascii", []string{"\xe2\x82", "a"}, 1, false},
	}
	for _, c := range cases {
		var s utf8Stream
		accepted := 0
		for _, p := range c.pieces {
			if !s.write([]byte(p)) {
				break
			}
			accepted++
		}
		if accepted != c.okUpTo {
			t.Errorf("%s: %d pieces accepted, want %d", c.name, accepted, c.okUpTo)
		}
		if accepted == len(c.pieces) && s.complete() != c.whole {
			t.Errorf("%s: complete() = %v, want %v", c.name, s.complete(), c.whole)
		}
	}
}

func TestDeflateNegotiation(t *testing.T) {
	cases := []struct {
		offer    string
		answer   string // "" when declined
		compress bool
	}{
		{"permessage-deflate", "permessage-deflate; server_no_context_takeover", true},
		// Autobahn's and browsers' usual offer.
		{"permessage-deflate; client_no_context_takeover; client_max_window_bits",
			"permessage-deflate; server_no_context_takeover; client_no_context_takeover", true},
		{"permessage-deflate; client_max_window_bits; server_max_window_bits=9",
			"permessage-deflate; server_no_context_takeover; server_max_window_bits=9", false},
		{"permessage-deflate; server_max_window_bits=15",
			"permessage-deflate; server_no_context_takeover; server_max_window_bits=15", true},
		{`permessage-deflate; client_max_window_bits="10"`, "permessage-deflate; server_no_context_takeover", true},
		// A declined offer leaves the next one.
		{"permessage-deflate; server_max_window_bits=7, permessage-deflate; client_no_context_takeover",
			"permessage-deflate; server_no_context_takeover; client_no_context_takeover", true},
		{"permessage-deflate; mystery", "", false},
		{"permessage-deflate; server_max_window_bits", "", false},
		{"permessage-deflate; server_max_window_bits=010", "", false},
		{"permessage-deflate; client_no_context_takeover; client_no_context_takeover", "", false},
		{"x-webkit-deflate-frame", "", false},
	}
	for _, c := range cases {
		h := http.Header{"Sec-Websocket-Extensions": {c.offer}}
		choice, ok := chooseDeflate(h)
		got := ""
		if ok {
			got = choice.answer()
		}
		if got != c.answer {
			t.Errorf("offer %q: answer %q, want %q", c.offer, got, c.answer)
		}
		if ok && choice.compresses() != c.compress {
			t.Errorf("offer %q: compresses %v, want %v", c.offer, choice.compresses(), c.compress)
		}
	}
}

// clientFrame is a masked frame as a client sends it.
func clientFrame(fin bool, opcode byte, payload []byte) []byte {
	key := []byte{0x37, 0xfa, 0x21, 0x3d}
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	frame := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		frame = append(frame, 0x80|byte(n))
	case n < 1<<16:
		frame = append(frame, 0x80|126, byte(n>>8), byte(n))
	default:
		frame = append(frame, 0x80|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	frame = append(frame, key...)
	for i, c := range payload {
		frame = append(frame, c^key[i%4])
	}
	return frame
}

func closePayload(code int, reason string) []byte {
	return append([]byte{byte(code >> 8), byte(code)}, reason...)
}

func readGuarded(stream []byte) ([]byte, error) {
	// One byte per read: every frame boundary falls inside some read.
	g := &closeGuard{src: iotest.OneByteReader(bytes.NewReader(stream))}
	return io.ReadAll(g)
}

func TestCloseGuardPassesFramesThroughUnchanged(t *testing.T) {
	var stream []byte
	stream = append(stream, clientFrame(true, 0x1, []byte("hello"))...)
	stream = append(stream, clientFrame(false, 0x2, bytes.Repeat([]byte{7}, 300))...)
	stream = append(stream, clientFrame(true, 0x9, []byte("ping"))...)
	stream = append(stream, clientFrame(true, 0x0, bytes.Repeat([]byte{9}, 70000))...)
	stream = append(stream, clientFrame(true, 0x8, closePayload(1000, "bye, ünïcode"))...)
	got, err := readGuarded(stream)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, stream) {
		t.Fatalf("the stream changed: %d bytes in, %d out", len(stream), len(got))
	}
}

func TestCloseGuardRefusesACloseReasonThatIsNotUTF8(t *testing.T) {
	text := clientFrame(true, 0x1, []byte("before"))
	stream := append(append([]byte{}, text...), clientFrame(true, 0x8, closePayload(1000, "bad \xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"))...)
	got, err := readGuarded(stream)
	if !errors.Is(err, errCloseReason) {
		t.Fatalf("err = %v, want errCloseReason", err)
	}
	if !bytes.Equal(got, text) {
		t.Fatalf("got %q, want only the frame before the close", got)
	}
}
