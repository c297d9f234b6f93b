// Package textfield is the one validator of free text a customer writes that the platform
// stores and shows to others (a payment's reference, carried into the ledger as the
// posting's description). Lengths are in characters (Unicode code points), as the API's
// JSON Schema maxLength and PostgreSQL's length() count them, not in bytes.
package textfield

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// ErrInvalid is wrapped by every refusal.
var ErrInvalid = errors.New("invalid text")

// Check reports whether s is at most max characters of valid UTF-8 with nothing that
// changes how the text around it is shown: no control characters (C0, DEL and C1), no
// bidirectional formatting characters (which can make a reference read backwards in a
// statement, the "Trojan Source" trick), and no line or paragraph separators.
func Check(s string, max int) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalid)
	}
	if n := utf8.RuneCountInString(s); n > max {
		return fmt.Errorf("%w: %d characters, at most %d allowed", ErrInvalid, n, max)
	}
	for i, r := range s {
		if reason := forbidden(r); reason != "" {
			return fmt.Errorf("%w: %s U+%04X at character %d", ErrInvalid, reason, r, utf8.RuneCountInString(s[:i])+1)
		}
	}
	return nil
}

func forbidden(r rune) string {
	switch {
	case unicode.IsControl(r): // Cc: U+0000–U+001F, U+007F–U+009F
		return "control character"
	case isBidi(r):
		return "bidirectional formatting character"
	case unicode.In(r, unicode.Zl, unicode.Zp):
		return "line or paragraph separator"
	}
	return ""
}

// isBidi lists Unicode's explicit bidirectional formatting characters (UAX #9 §2): the
// marks, embeddings, overrides and isolates.
func isBidi(r rune) bool {
	switch {
	case r == 0x061C, r == 0x200E, r == 0x200F: // ALM, LRM, RLM
		return true
	case r >= 0x202A && r <= 0x202E: // LRE, RLE, PDF, LRO, RLO
		return true
	case r >= 0x2066 && r <= 0x2069: // LRI, RLI, FSI, PDI
		return true
	}
	return false
}
