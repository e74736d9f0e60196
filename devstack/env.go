package devstack

import "os"

// EnvRequireReal set to "1" (CI sets it) turns a missing or unreachable
// real server, or a missing server binary, into a test failure instead of a
// fallback or a skip.
const EnvRequireReal = "IMINFRA_TEST_REQUIRE_REAL"

// RequireReal reports whether EnvRequireReal is "1".
func RequireReal() bool { return os.Getenv(EnvRequireReal) == "1" }
