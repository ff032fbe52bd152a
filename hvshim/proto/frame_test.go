package proto

import (
	"bytes"
	"errors"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	var b bytes.Buffer
	if err := WriteFrame(&b, Hello{Magic: Magic, Version: Version}); err != nil {
		t.Fatal(err)
	}
	var h Hello
	if err := ReadFrame(&b, &h, MaxFrame); err != nil || h.Magic != Magic || h.Version != Version {
		t.Fatalf("got %+v, %v", h, err)
	}
}

func TestFrameLimits(t *testing.T) {
	var h Hello
	big := []byte{0x7f, 0xff, 0xff, 0xff}
	if err := ReadFrame(bytes.NewReader(big), &h, MaxFrame); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized frame: %v", err)
	}
	if err := ReadFrame(bytes.NewReader([]byte{0, 0, 0, 9, '{'}), &h, MaxFrame); err == nil {
		t.Fatal("truncated frame accepted")
	}
	if err := ReadFrame(bytes.NewReader([]byte{0, 0, 0, 1, '['}), &h, MaxFrame); err == nil {
		t.Fatal("garbage frame accepted")
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Add([]byte{0, 0, 0, 1, '['})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Request
		_ = ReadFrame(bytes.NewReader(b), &r, 1024)
	})
}
