package sync

import (
	"crypto/rand"
	"fmt"
	"math/big"
)

// Password alphabets. Look-alike characters are left out so a help-desk
// reading one aloud cannot mistake them; symbols are those Entra accepts.
const (
	pwLower   = "abcdefghijkmnopqrstuvwxyz"
	pwUpper   = "ABCDEFGHJKLMNPQRSTUVWXYZ"
	pwDigits  = "23456789"
	pwSymbols = "!#$%&*+-=?@^_~"
)

// DefaultPasswordLength is used when the job does not set password.length.
const DefaultPasswordLength = 20

// NewPassword draws an initial password from crypto/rand with at least one
// character of each class (Entra requires three of four). It lives only in
// the directory.Operation handed to the executor: never stored or logged.
func NewPassword(length int) (string, error) {
	if length <= 0 {
		length = DefaultPasswordLength
	}
	if length < 12 {
		length = 12
	}
	if length > 256 {
		length = 256
	}
	classes := []string{pwLower, pwUpper, pwDigits, pwSymbols}
	all := pwLower + pwUpper + pwDigits + pwSymbols
	buf := make([]byte, length)
	for i := range buf {
		set := all
		if i < len(classes) {
			set = classes[i]
		}
		c, err := pick(set)
		if err != nil {
			return "", err
		}
		buf[i] = c
	}
	// Shuffle so the guaranteed classes are not always in front.
	for i := len(buf) - 1; i > 0; i-- {
		j, err := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		if err != nil {
			return "", fmt.Errorf("generate password: %w", err)
		}
		buf[i], buf[j.Int64()] = buf[j.Int64()], buf[i]
	}
	return string(buf), nil
}

func pick(set string) (byte, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(int64(len(set))))
	if err != nil {
		return 0, fmt.Errorf("generate password: %w", err)
	}
	return set[n.Int64()], nil
}
