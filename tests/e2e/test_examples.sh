#!/usr/bin/env bash
# The examples on Linux (tests/e2e/examples.sh): a small client exchange each, exact bytes.
exec bash "$(dirname "$0")/examples.sh" "$@"
