package store

import "testing"

func TestFirstLine(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		n        int
		want     string
	}{
		{"short_single_line_is_kept", "boom", 10, "boom"},
		{"later_lines_are_marked_not_shown", "first\nsecond", 20, "first …"},
		{"carriage_return_ends_the_line_too", "first\r\nsecond", 20, "first …"},
		{"long_line_is_cut_to_n_runes", "abcdefgh", 5, "abcd…"},
		{"runes_not_bytes_are_counted", "ééééé", 4, "ééé…"},
		{"exactly_n_runes_is_kept", "abcde", 5, "abcde"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := FirstLine(tc.in, tc.n); got != tc.want {
				t.Errorf("FirstLine(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
			}
		})
	}
}
