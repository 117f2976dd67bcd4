package pgnotify

import (
	"context"
	"strings"
	"testing"
	"time"
)

// The tests against a real server, including the one-second delivery of a
// key-table change, are in integration/keytable_test.go.

func TestListenRejectsBadArguments(t *testing.T) {
	ctx := context.Background()
	noop := func() {}
	for _, tt := range []struct {
		name, dsn, channel string
		fn                 func()
		want               string
	}{
		{"bad DSN", "postgres://u:sekrit@[::1", "colcrypt_keys", noop, "pgnotify"},
		// Forms where pgx's own error would repeat the password.
		{"spaced keyword DSN", "host=h password = sekrit port=x", "colcrypt_keys", noop, "does not parse"},
		{"@ in a URL password", "postgres://u:sek@sekrit@h:x/db", "colcrypt_keys", noop, "does not parse"},
		{"escaped space", `host=h password=sek\ sekrit port=x`, "colcrypt_keys", noop, "does not parse"},
		{"bad channel", "postgres://127.0.0.1:1/db", "Keys; DROP TABLE x", noop, "channel name"},
		{"long channel", "postgres://127.0.0.1:1/db", strings.Repeat("a", 64), noop, "channel name"},
		{"nil func", "postgres://127.0.0.1:1/db", "colcrypt_keys", nil, "nil onNotify"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Listen(ctx, tt.dsn, tt.channel, tt.fn, Options{})
			if err == nil {
				_ = l.Close()
				t.Fatal("Listen succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "sekrit") {
				t.Errorf("error %q: want it to say %q and not show the password", err, tt.want)
			}
		})
	}
}

func TestListenFailsWhenServerIsDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Port 1 on loopback: nothing listens there, so the connection is refused at once.
	_, err := Listen(ctx, "postgres://colcrypt:sekrit@127.0.0.1:1/db?connect_timeout=5", "colcrypt_keys", func() {}, Options{})
	if err == nil || !strings.Contains(err.Error(), "pgnotify: connecting") || strings.Contains(err.Error(), "sekrit") {
		t.Fatalf("Listen = %v", err)
	}
}
