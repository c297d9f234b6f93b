package textfield_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/libs/textfield"
)

func TestCheck(t *testing.T) {
	const max = 140
	for _, tc := range []struct {
		name, in string
		want     string // "" accepted, else the error text
	}{
		{"empty", "", ""},
		{"ascii", "rent March", ""},
		{"accents", "loyer de mars, réglé", ""},
		{"140 two-byte characters", strings.Repeat("é", max), ""},
		{"140 four-byte characters", strings.Repeat("😀", max), ""},
		{"right-to-left script", "שכר דירה", ""},
		{"141 characters", strings.Repeat("é", max+1), "invalid text: 141 characters, at most 140 allowed"},
		{"NUL", "re\x00nt", "invalid text: control character U+0000 at character 3"},
		{"newline", "rent\n", "invalid text: control character U+000A at character 5"},
		{"DEL", "rent\x7f", "invalid text: control character U+007F at character 5"},
		{"C1 NEL", "rent\u0085", "invalid text: control character U+0085 at character 5"},
		{"C1 CSI", "\u009b31m", "invalid text: control character U+009B at character 1"},
		{"right-to-left override", "invoice \u202egpj.exe", "invalid text: bidirectional formatting character U+202E at character 9"},
		{"left-to-right embedding", "\u202aabc", "invalid text: bidirectional formatting character U+202A at character 1"},
		{"pop directional formatting", "abc\u202c", "invalid text: bidirectional formatting character U+202C at character 4"},
		{"right-to-left isolate", "a\u2067b", "invalid text: bidirectional formatting character U+2067 at character 2"},
		{"pop directional isolate", "a\u2069", "invalid text: bidirectional formatting character U+2069 at character 2"},
		{"right-to-left mark", "a\u200fb", "invalid text: bidirectional formatting character U+200F at character 2"},
		{"arabic letter mark", "a\u061cb", "invalid text: bidirectional formatting character U+061C at character 2"},
		{"line separator", "a\u2028b", "invalid text: line or paragraph separator U+2028 at character 2"},
		{"invalid UTF-8", "a\xffb", "invalid text: not valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := textfield.Check(tc.in, max)
			got := ""
			if err != nil {
				got = err.Error()
				if !errors.Is(err, textfield.ErrInvalid) {
					t.Errorf("error %v does not wrap ErrInvalid", err)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Check(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

// FuzzCheck: whatever Check accepts is valid UTF-8 within the character limit, with no
// control or bidirectional formatting character left in it.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{"rent", "\u202e", "\u0085", strings.Repeat("é", 141), "a\xffb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if textfield.Check(s, 140) != nil {
			return
		}
		if !utf8.ValidString(s) || utf8.RuneCountInString(s) > 140 {
			t.Fatalf("accepted %q", s)
		}
		for _, r := range s {
			if r < 0x20 || (r >= 0x7f && r <= 0x9f) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
				t.Fatalf("accepted %q with U+%04X", s, r)
			}
		}
	})
}
