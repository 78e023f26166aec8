#!/usr/bin/env bash
# A CI agent's machine identity: client credentials → AIRLOCK_TOKEN → airlock stdio.
# The client (AIRLOCK_CLIENT_ID / AIRLOCK_CLIENT_SECRET, from the CI secret store) is registered
# with your provider with the client_credentials grant, audience https://airlock.example.com/mcp
# and a groups claim such as ["ci"] that policy rules match on.
set -euo pipefail

issuer="${AIRLOCK_ISSUER:?}"                       # e.g. https://idp.example.com/
audience="${AIRLOCK_AUDIENCE:-https://airlock.example.com/mcp}"
token_url="$(curl -fsS "${issuer%/}/.well-known/openid-configuration" | jq -r .token_endpoint)"

# The client secret reaches curl through its config on stdin, not the command line (ps shows that).
AIRLOCK_TOKEN="$(
  curl -fsS "$token_url" --config - \
    --data-urlencode grant_type=client_credentials \
    --data-urlencode scope=mcp:tools \
    --data-urlencode "audience=$audience" \
    --data-urlencode "resource=$audience" <<CONFIG | jq -r .access_token
user = "${AIRLOCK_CLIENT_ID:?}:${AIRLOCK_CLIENT_SECRET:?}"
CONFIG
)"
export AIRLOCK_TOKEN

# The agent starts airlock as its stdio MCP server; airlock verifies the token like any HTTP call.
# Tokens are short-lived: get one per job. (Equivalently: `airlock login` with a client secret,
# which caches and renews it.)
exec "$@"   # e.g. ./ci-agent.sh my-agent --mcp-command "airlock stdio --config airlock.yaml"
