package graphsim_test

import (
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// jwtClaims reads a token's claims without verifying it (the emulator
// verifies; tests only inspect).
func jwtClaims(t testing.TB, raw string) jwt.MapClaims {
	t.Helper()
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, claims); err != nil {
		t.Fatalf("parse token: %v", err)
	}
	return claims
}
