package libruntime

import (
	"errors"
	"fmt"
)

// MaxIDLength bounds container IDs so that they always fit in one path
// component (NAME_MAX) with room for the runtime's own suffixes.
const MaxIDLength = 200

// ValidateID applies runc's rule for container IDs (letters, digits and
// "_+-.") before any path is built from an ID.
func ValidateID(id string) error {
	if id == "" {
		return errors.New("container id cannot be empty")
	}
	if len(id) > MaxIDLength {
		return fmt.Errorf("invalid container id: longer than %d characters", MaxIDLength)
	}
	// runc also refuses "." and ".."; runh refuses every leading dot,
	// which it keeps for its own entries in the state root.
	if id[0] == '.' {
		return fmt.Errorf("invalid container id %q: must not start with a dot", id)
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '_' || r == '+' || r == '-' || r == '.':
		default:
			return fmt.Errorf("invalid container id %q: only letters, digits and _+-. are allowed", id)
		}
	}
	return nil
}
