package proxy

import "fmt"

// Mode says what a deny does: enforce refuses, report lets the request
// through and logs "would-deny". The address guard is enforced in both.
type Mode uint8

// Modes.
const (
	ModeEnforce Mode = iota
	ModeReport
)

func (m Mode) String() string {
	if m == ModeReport {
		return "report"
	}
	return "enforce"
}

// ParseMode parses "enforce" or "report".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "enforce", "":
		return ModeEnforce, nil
	case "report":
		return ModeReport, nil
	}
	return 0, fmt.Errorf("mode %q: use enforce or report", s)
}
