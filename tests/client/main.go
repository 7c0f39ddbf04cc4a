// The test client: what a Quix Streams app does with its token, as a static program that runs in
// a pod on the real test node (image localhost/sto/client:1, built by tests/node/build.sh).
//
// It reads the token once at start from Quix__Sdk__Token (as the SDK does), or with
// --token-file PATH from a mounted file that it re-reads whenever the content changes (checked
// every 100 ms). Then, every 100 ms, it asks the platform for the broker configuration:
//
//	GET {Quix__Portal__Api}/workspaces/{Quix__Workspace__Id}/broker/librdkafka
//	Authorization: Bearer <token>, X-Version: 2.0, Accept: application/json,
//	X-Client: <$POD_NAME or the hostname>
//
// On stdout: one line per rejected call ("<RFC3339Nano> rejected status=401"), one per failed
// call, and one per minute with the counts. It never logs the token or a response body (the
// body holds the broker password). SIGTERM and SIGINT end it at once.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stdout, "%s "+format+"\n", append([]any{time.Now().UTC().Format(time.RFC3339Nano)}, args...)...)
}

func fatalf(format string, args ...any) {
	logf("fatal: "+format, args...)
	os.Exit(2)
}

// tokenSource holds the current token; a file source is re-read by watch.
type tokenSource struct {
	current atomic.Pointer[string]
	path    string
	raw     []byte // the file's last content, to notice a change
}

func (t *tokenSource) get() string { return *t.current.Load() }

func (t *tokenSource) set(token string) { t.current.Store(&token) }

// reload re-reads the file; it reports whether the token changed.
func (t *tokenSource) reload() (bool, error) {
	raw, err := os.ReadFile(t.path)
	if err != nil {
		return false, err
	}
	if t.raw != nil && bytes.Equal(raw, t.raw) {
		return false, nil
	}
	first := t.raw == nil
	t.raw = raw
	token := strings.TrimSpace(string(raw))
	if token == "" {
		return false, fmt.Errorf("token file %s is empty", t.path)
	}
	t.set(token)
	return !first, nil
}

func (t *tokenSource) watch(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		changed, err := t.reload()
		switch {
		case err != nil && !failing:
			failing = true
			logf("token file unreadable, keeping the previous token: %v", err)
		case err == nil:
			failing = false
			if changed {
				logf("token file changed, using the new token")
			}
		}
	}
}

func main() {
	tokenFile := flag.String("token-file", "", "read the token from this file (re-read on change) instead of $Quix__Sdk__Token")
	interval := flag.Duration("interval", 100*time.Millisecond, "time between calls")
	statsEvery := flag.Duration("stats-interval", time.Minute, "time between count lines")
	timeout := flag.Duration("timeout", 2*time.Second, "timeout of one call")
	flag.Parse()

	api := strings.TrimRight(os.Getenv("Quix__Portal__Api"), "/")
	workspace := os.Getenv("Quix__Workspace__Id")
	if api == "" || workspace == "" {
		fatalf("Quix__Portal__Api and Quix__Workspace__Id must be set")
	}
	client := os.Getenv("POD_NAME")
	if client == "" {
		client, _ = os.Hostname()
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-signals
		logf("exiting on %v", s)
		os.Exit(0)
	}()

	tokens := &tokenSource{path: *tokenFile}
	source := "env Quix__Sdk__Token"
	if *tokenFile != "" {
		if _, err := tokens.reload(); err != nil {
			fatalf("reading the token file: %v", err)
		}
		source = "file " + *tokenFile
		go tokens.watch(ctx, 100*time.Millisecond)
	} else {
		token := strings.TrimSpace(os.Getenv("Quix__Sdk__Token"))
		if token == "" {
			fatalf("Quix__Sdk__Token is not set")
		}
		tokens.set(token)
	}

	url := api + "/workspaces/" + workspace + "/broker/librdkafka"
	logf("started client=%s url=%s token=%s", client, url, source)
	httpClient := &http.Client{Timeout: *timeout}
	var ok, rejected, failed uint64
	call := func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			fatalf("building the request: %v", err)
		}
		req.Header.Set("Authorization", "Bearer "+tokens.get())
		req.Header.Set("X-Version", "2.0")
		req.Header.Set("Accept", "application/json")
		req.Header.Set("X-Client", client)
		resp, err := httpClient.Do(req)
		if err != nil {
			failed++
			logf("failed error=%q", err.Error())
			return
		}
		// Read (to reuse the connection) and drop the body: it holds the broker password.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			ok++
			return
		}
		rejected++
		logf("rejected status=%d", resp.StatusCode)
	}

	calls := time.NewTicker(*interval)
	stats := time.NewTicker(*statsEvery)
	call()
	for {
		select {
		case <-calls.C:
			call()
		case <-stats.C:
			logf("counts ok=%d rejected=%d failed=%d", ok, rejected, failed)
		}
	}
}
