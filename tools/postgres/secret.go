package postgres

import "github.com/airlock-mcp/airlock/tools"

// Secret is the role's password, for the driver and for tests that look for
// it where it must never be. It prints as [REDACTED].
func (c *Credential) Secret() tools.Secret { return c.password }
