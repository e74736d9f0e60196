package devstack

import (
	"os"
	"path/filepath"
)

// The SQL databases of dev and tests: SQLite, a file, needs no server and is
// the default; MariaDB/MySQL and PostgreSQL are real servers named by these
// variables, else the machine's own.
const (
	EnvMySQLDSN        = "IMINFRA_TEST_MYSQL_DSN"
	EnvPostgresDSN     = "IMINFRA_TEST_POSTGRES_DSN"
	DefaultMySQLDSN    = "root@tcp(127.0.0.1:3306)/test?parseTime=true"
	DefaultPostgresDSN = "host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable"
)

// MySQLDSN is IMINFRA_TEST_MYSQL_DSN, else DefaultMySQLDSN.
func MySQLDSN() string { return envOr(EnvMySQLDSN, DefaultMySQLDSN) }

// PostgresDSN is IMINFRA_TEST_POSTGRES_DSN, else DefaultPostgresDSN.
func PostgresDSN() string { return envOr(EnvPostgresDSN, DefaultPostgresDSN) }

// SQLiteFile returns the path of a new SQLite database in dir (the driver
// creates the file on first use), creating dir if needed.
func SQLiteFile(dir, name string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return filepath.Join(dir, name+".db"), nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
