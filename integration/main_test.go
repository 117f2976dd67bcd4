package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
)

// Environment variables that choose the database.
const (
	// envDSN names a PostgreSQL database to run against. When it is set,
	// no container is started.
	envDSN = "COLCRYPT_TEST_DATABASE_URL"
	// envRequireDB set to "1" turns "no database, skipping" into a test
	// failure; CI sets it so that integration tests cannot silently skip.
	envRequireDB = "COLCRYPT_REQUIRE_DB"
	// exampleDSN is what the skip message suggests.
	exampleDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

// Time limits for the container path. The Docker probe is short so that a
// machine without Docker skips at once; starting the container may pull
// the image, which takes longer.
const (
	dockerProbeTimeout    = 10 * time.Second
	containerStartTimeout = 5 * time.Minute
	containerStopTimeout  = time.Minute
	postgresImage         = "postgres:16-alpine"
)

// database is found once per test binary, on first use, by databaseURL.
var database struct {
	once      sync.Once
	dsn       string                        // "" when there is no database
	why       string                        // why there is none, when dsn == ""
	container *tcpostgres.PostgresContainer // started by us; terminated in TestMain
	explained atomic.Bool                   // the full skip message has been given
}

// TestMain runs the tests and then terminates the PostgreSQL container, if
// one was started.
func TestMain(m *testing.M) {
	code := m.Run()
	// m.Run has returned, so no test is still using the container and
	// database.once has finished if it ever started.
	if c := database.container; c != nil {
		ctx, cancel := context.WithTimeout(context.Background(), containerStopTimeout)
		if err := c.Terminate(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "integration: terminating the PostgreSQL container: %v\n", err)
		}
		cancel()
	}
	os.Exit(code)
}

// databaseURL returns the DSN of the PostgreSQL database the integration
// tests run against: $COLCRYPT_TEST_DATABASE_URL when it is set, otherwise a
// container started with testcontainers-go (once per test binary). When
// neither is available it skips t, or fails it if COLCRYPT_REQUIRE_DB=1,
// with a message that says how to run the tests.
func databaseURL(t testing.TB) string {
	t.Helper()
	database.once.Do(findDatabase)
	if database.dsn != "" {
		return database.dsn
	}
	if !database.explained.CompareAndSwap(false, true) {
		// Say it in full once per test binary.
		msg := fmt.Sprintf("no PostgreSQL database for the integration tests (%s); see the first skipped test for how to run them", database.why)
		if os.Getenv(envRequireDB) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	msg := fmt.Sprintf("no PostgreSQL database for the integration tests (%s).\n"+
		"To run them, either set %s to a PostgreSQL database in which the tests may create and drop tables, for example\n"+
		"\t%s='%s' go test ./integration/...\n"+
		"or have a working Docker engine, and testcontainers-go will start %s.\n"+
		"Set %s=1 to make a missing database a failure instead of a skip.",
		database.why, envDSN, envDSN, exampleDSN, postgresImage, envRequireDB)
	if os.Getenv(envRequireDB) == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// findDatabase fills in database.dsn, or database.why.
func findDatabase() {
	if dsn := os.Getenv(envDSN); dsn != "" {
		database.dsn = dsn
		return
	}
	if err := probeDocker(); err != nil {
		database.why = fmt.Sprintf("%s is not set, and Docker is not available: %v", envDSN, err)
		return
	}
	c, dsn, err := startPostgres()
	if err != nil {
		database.why = fmt.Sprintf("%s is not set, and starting a PostgreSQL container failed: %v", envDSN, err)
		return
	}
	database.container, database.dsn = c, dsn
}

// probeDocker reports whether testcontainers-go can reach a container
// engine. testcontainers panics in some set-ups without Docker and its
// discovery has no deadline of its own, so the probe runs in a goroutine,
// recovers, and is abandoned after dockerProbeTimeout.
func probeDocker() error {
	ctx, cancel := context.WithTimeout(context.Background(), dockerProbeTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("testcontainers panicked: %v", r)
			}
		}()
		p, err := testcontainers.ProviderDefault.GetProvider()
		if err != nil {
			done <- err
			return
		}
		done <- p.Health(ctx) // Health closes p
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("no answer from the Docker engine within %v", dockerProbeTimeout)
	}
}

// startPostgres starts a PostgreSQL container and returns it with its DSN.
func startPostgres() (c *tcpostgres.PostgresContainer, dsn string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), containerStartTimeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("testcontainers panicked: %v", r)
		}
		if err != nil && c != nil {
			_ = testcontainers.TerminateContainer(c)
			c = nil
		}
	}()
	c, err = tcpostgres.Run(ctx, postgresImage,
		tcpostgres.WithDatabase("colcrypt_test"),
		tcpostgres.WithUsername("colcrypt"),
		tcpostgres.WithPassword("colcrypt"),
		tcpostgres.BasicWaitStrategies(),
	)
	if err != nil {
		return c, "", err
	}
	dsn, err = c.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		return c, "", err
	}
	if dsn == "" {
		return c, "", errors.New("the container reported an empty connection string")
	}
	return c, dsn, nil
}
