package body

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestDeclared(t *testing.T) {
	t.Parallel()
	for in, want := range map[int64]int64{-5: -1, -1: -1, 0: -1, 1: 1, 1 << 40: 1 << 40} {
		if got := Declared(in); got != want {
			t.Errorf("Declared(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestReader(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	for _, tc := range []struct {
		name    string
		r       io.Reader
		size    int64
		wantN   int
		wantErr error // nil: success
	}{
		{"unknown size", strings.NewReader("hello"), -1, 5, nil},
		{"exact size", strings.NewReader("hello"), 5, 5, nil},
		{"empty, size 0", strings.NewReader(""), 0, 0, nil},
		{"short", strings.NewReader("hell"), 5, 4, ErrSizeMismatch},
		{"long", strings.NewReader("hello!"), 5, 0, ErrSizeMismatch},
		{"long, size 0", strings.NewReader("x"), 0, 0, ErrSizeMismatch},
		{"failing", io.MultiReader(strings.NewReader("he"), iotest.ErrReader(boom)), -1, 2, boom},
		{"one byte at a time", iotest.OneByteReader(strings.NewReader("hello")), 5, 5, nil},
		{"data with EOF", iotest.DataErrReader(strings.NewReader("hello")), 5, 5, nil},
	} {
		b := New(context.Background(), tc.r, tc.size)
		got, err := io.ReadAll(b)
		if tc.wantErr == nil {
			if err != nil || len(got) != tc.wantN || b.Err() != nil {
				t.Errorf("%s: read %d bytes, %v (Err %v); want %d, nil", tc.name, len(got), err, b.Err(), tc.wantN)
			}
			continue
		}
		if !errors.Is(err, tc.wantErr) || !errors.Is(b.Err(), tc.wantErr) {
			t.Errorf("%s: error %v (Err %v), want %v", tc.name, err, b.Err(), tc.wantErr)
		}
		// The failure sticks.
		if _, err := b.Read(make([]byte, 1)); !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: Read after failure = %v, want %v", tc.name, err, tc.wantErr)
		}
	}
}

func TestReaderContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	b := New(ctx, strings.NewReader("hello"), -1)
	p := make([]byte, 2)
	if _, err := b.Read(p); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := b.Read(p); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel = %v, want context.Canceled", err)
	}
	if b.Err() != nil {
		t.Fatalf("Err = %v: a done context is not the body's failure", b.Err())
	}
}
