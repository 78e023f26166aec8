package store

import "strings"

// CheckPassword resolves the password reference of a postgres:// store URL
// (password_env or password_file) as Open would, without connecting: nil
// for another kind of store, for a URL with no reference, and for one that
// resolves to a password. Errors name the setting, never the secret; they
// start with "store URL: " for a reference that does not resolve.
func CheckPassword(rawURL string) error {
	scheme, _, _ := strings.Cut(rawURL, "://")
	if s := strings.ToLower(scheme); s != "postgres" && s != "postgresql" {
		return nil
	}
	_, _, err := resolvePassword(rawURL)
	return err
}
