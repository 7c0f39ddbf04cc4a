package main

// The tests run the platform as a real process (this test binary re-executed with
// PLATFORM_TEST_CHILD=1) and talk to it over HTTP, as the operator's tests do.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if os.Getenv("PLATFORM_TEST_CHILD") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type proc struct {
	t       *testing.T
	cmd     *exec.Cmd
	output  *lockedBuffer // stdout and stderr, all of it
	done    chan struct{}
	URL     string `json:"url"`
	Admin   string `json:"admin"`
	client  *http.Client
	secrets map[string]bool // values that must never appear in the output
	stopped bool
}

func startPlatform(t *testing.T, args ...string) *proc {
	t.Helper()
	readyFile := filepath.Join(t.TempDir(), "ready.json")
	cmd := exec.Command(os.Args[0], append([]string{"--ready-file", readyFile}, args...)...)
	cmd.Env = append(os.Environ(), "PLATFORM_TEST_CHILD=1")
	p := &proc{t: t, cmd: cmd, output: &lockedBuffer{}, done: make(chan struct{}), secrets: map[string]bool{defaultBrokerPassword: true}}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = p.output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		reader := bufio.NewReader(stdout)
		line, _ := reader.ReadString('\n')
		p.output.Write([]byte(line))
		lines <- line
		io.Copy(p.output, reader)
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.stopped {
			cmd.Process.Kill()
			<-p.done
		}
	})
	select {
	case line := <-lines:
		if err := json.Unmarshal([]byte(line), p); err != nil || p.URL == "" || p.Admin == "" {
			t.Fatalf("ready line %q: %v\noutput:\n%s", line, err, p.output.String())
		}
		fromFile, err := os.ReadFile(readyFile)
		if err != nil || string(fromFile) != line {
			t.Fatalf("ready file %q (%v), stdout %q", fromFile, err, line)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no ready line; output:\n%s", p.output.String())
	}
	// No keep-alive: a fault that closes a connection never makes the client retry a request.
	p.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	return p
}

// stop sends SIGTERM, expects a clean exit and returns the whole output.
func (p *proc) stop() string {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.t.Fatalf("no exit 10 s after SIGTERM; output:\n%s", p.output.String())
	}
	p.stopped = true
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		p.t.Fatalf("exit code %d after SIGTERM; output:\n%s", code, p.output.String())
	}
	return p.output.String()
}

type response struct {
	status int
	body   []byte
	err    error
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
}

func (p *proc) do(client *http.Client, method, url string, body any, headers ...string) response {
	var reader io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, reader)
	if err != nil {
		p.t.Fatal(err)
	}
	req.Header.Set("X-Client", "platform-test")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := client.Do(req)
	if err != nil {
		return response{err: err}
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	return response{status: res.StatusCode, body: data, err: err}
}

// admin calls the admin API and expects the status.
func (p *proc) admin(method, path string, body any, want int, into any) {
	p.t.Helper()
	r := p.do(p.client, method, p.Admin+path, body)
	if r.err != nil || r.status != want {
		p.t.Fatalf("%s %s: status %d (want %d), %v: %s", method, path, r.status, want, r.err, r.body)
	}
	if into != nil {
		r.json(p.t, into)
	}
}

func (p *proc) broker(ws, token string, headers ...string) response {
	h := append([]string{"Authorization", "Bearer " + token, "X-Version", "2.0", "Accept", "application/json"}, headers...)
	return p.do(p.client, "GET", p.URL+"/workspaces/"+ws+"/broker/librdkafka", nil, h...)
}

func (p *proc) read(ws, pat string) response {
	return p.do(p.client, "GET", p.URL+"/workspaces/"+ws+"/tokens", nil, "Authorization", "bearer "+pat, "Accept", "application/json")
}

func (p *proc) rotate(ws, pat string) response {
	return p.do(p.client, "POST", p.URL+"/workspaces/"+ws+"/tokens/rotate", nil, "Authorization", "Bearer "+pat, "Accept", "application/json")
}

type adminWorkspace struct {
	pairBody
	Deactivated []deactivatedBody `json:"deactivated"`
	Rotations   int               `json:"rotations"`
}

func (p *proc) workspace(ws string) adminWorkspace {
	p.t.Helper()
	var w adminWorkspace
	p.admin("GET", "/admin/workspaces/"+ws, nil, 200, &w)
	p.secrets[w.Token1.Value] = true
	p.secrets[w.Token2.Value] = true
	for _, d := range w.Deactivated {
		p.secrets[d.Value] = true
	}
	return w
}

func (p *proc) mintPAT(role, expiresIn string, workspaces ...string) string {
	p.t.Helper()
	var out struct {
		PAT       string `json:"pat"`
		ExpiresAt string `json:"expiresAt"`
	}
	p.admin("POST", "/admin/pats", map[string]any{"role": role, "expiresIn": expiresIn, "workspaces": workspaces}, 201, &out)
	if strings.Count(out.PAT, ".") != 2 {
		p.t.Fatalf("PAT not JWT-shaped: %d dots", strings.Count(out.PAT, "."))
	}
	if _, err := time.Parse(time.RFC3339, out.ExpiresAt); err != nil {
		p.t.Fatalf("expiresAt %q: %v", out.ExpiresAt, err)
	}
	p.secrets[out.PAT] = true
	return out.PAT
}

type callBody struct {
	Time        string `json:"time"`
	Endpoint    string `json:"endpoint"`
	Method      string `json:"method"`
	Path        string `json:"path"`
	Workspace   string `json:"workspace"`
	Status      int    `json:"status"`
	Fault       string `json:"fault"`
	TokenSerial int    `json:"tokenSerial"`
	TokenState  string `json:"tokenState"`
	Client      string `json:"client"`
	Acted       bool   `json:"acted"`
}

func (p *proc) calls(query string) []callBody {
	p.t.Helper()
	var calls []callBody
	p.admin("GET", "/admin/calls"+query, nil, 200, &calls)
	return calls
}

func (p *proc) fault(endpoint, kind string, count, latencyMs int) {
	p.t.Helper()
	p.admin("POST", "/admin/faults", map[string]any{"endpoint": endpoint, "kind": kind, "count": count, "latencyMs": latencyMs}, 201, nil)
}

func expectStatus(t *testing.T, what string, r response, want int) {
	t.Helper()
	if r.err != nil || r.status != want {
		t.Fatalf("%s: status %d (want %d), %v: %s", what, r.status, want, r.err, r.body)
	}
}

func expectNoResponse(t *testing.T, what string, r response) {
	t.Helper()
	if r.err == nil {
		t.Fatalf("%s: got status %d, want no response", what, r.status)
	}
}

var generated = regexp.MustCompile(`^sdk-[A-Za-z0-9]{40}$`)

func TestLoopbackOnly(t *testing.T) {
	for _, args := range [][]string{
		{"--listen", "0.0.0.0:0"},
		{"--listen", ":0"},
		{"--admin-listen", "192.0.2.1:0"},
	} {
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), "PLATFORM_TEST_CHILD=1")
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || !strings.Contains(string(out), "loopback") {
			t.Errorf("%v: %v, output %q; want a refusal", args, err, out)
		}
	}
}

func TestPlatform(t *testing.T) {
	p := startPlatform(t)
	given1, given2 := "sdk-given-one-"+randomAlphanumerics(20), "sdk-given-two-"+randomAlphanumerics(20)
	p.secrets[given1], p.secrets[given2] = true, true
	var created pairBody
	p.admin("POST", "/admin/workspaces", map[string]string{"id": "ws1", "token1": given1, "token2": given2}, 201, &created)
	if created.WorkspaceID != "ws1" || created.Token1.Value != given1 || created.Token2.Value != given2 ||
		created.Token1.Serial != 1 || created.Token2.Serial != 2 {
		t.Fatalf("created: %+v", created)
	}
	p.admin("POST", "/admin/workspaces", map[string]string{"id": "ws1"}, 409, nil)
	p.admin("POST", "/admin/workspaces", map[string]string{"id": "ws2"}, 201, nil)
	ws2 := p.workspace("ws2")
	if !generated.MatchString(ws2.Token1.Value) || !generated.MatchString(ws2.Token2.Value) || ws2.Token1.Serial != 3 {
		t.Fatalf("ws2: serials %d %d, generated values well-formed: %t %t", ws2.Token1.Serial, ws2.Token2.Serial,
			generated.MatchString(ws2.Token1.Value), generated.MatchString(ws2.Token2.Value))
	}

	t.Run("check", func(t *testing.T) {
		r := p.broker("ws1", given1)
		expectStatus(t, "Token 1", r, 200)
		var config map[string]string
		r.json(t, &config)
		if config["sasl.password"] != defaultBrokerPassword || config["sasl.username"] != "ws1-user" ||
			config["bootstrap.servers"] != "127.0.0.1:9092" || config["security.protocol"] != "SASL_SSL" ||
			config["sasl.mechanism"] != "SCRAM-SHA-256" || config["ssl.ca.cert"] == "" {
			t.Fatalf("broker config: %v keys", len(config))
		}
		expectStatus(t, "Token 2, lower-case scheme", p.do(p.client, "GET", p.URL+"/workspaces/ws1/broker/librdkafka", nil,
			"Authorization", "bearer "+given2, "Accept", "application/json", "X-Version", "2.0"), 200)
		expectStatus(t, "no Accept", p.do(p.client, "GET", p.URL+"/workspaces/ws1/broker/librdkafka", nil,
			"Authorization", "Bearer "+given1, "X-Version", "2.0"), 415)
		expectStatus(t, "Accept text/plain", p.broker("ws1", given1, "Accept", "text/plain"), 415)
		r = p.broker("ws1", "sdk-unknown")
		expectStatus(t, "unknown token", r, 401)
		var body message
		r.json(t, &body)
		if body.Message != "User is not authenticated" || body.CorrelationID == "" {
			t.Fatalf("401 body %q", r.body)
		}
		expectStatus(t, "other workspace's token", p.broker("ws1", ws2.Token1.Value), 401)
		expectStatus(t, "no Authorization", p.do(p.client, "GET", p.URL+"/workspaces/ws1/broker/librdkafka", nil, "Accept", "application/json"), 401)
		expectStatus(t, "unknown workspace", p.broker("ws9", given1), 404)
		expectStatus(t, "wrong method", p.do(p.client, "POST", p.URL+"/workspaces/ws1/broker/librdkafka", nil), 405)
		expectStatus(t, "other path", p.do(p.client, "GET", p.URL+"/nothing", nil), 404)
		calls := p.calls("?endpoint=broker")
		if len(calls) != 9 || calls[8].Status != 405 || calls[0].TokenSerial != 1 || calls[0].TokenState != "current1" || calls[0].Status != 200 ||
			calls[1].TokenState != "current2" || calls[1].TokenSerial != 2 || calls[4].TokenState != "unknown" ||
			calls[5].TokenSerial != 3 || calls[0].Client != "platform-test" || calls[0].Acted {
			t.Fatalf("broker calls: %+v", calls)
		}
	})

	admin1 := p.mintPAT("Admin", "1h", "ws1")
	adminAll := p.mintPAT("Admin", "1h")
	viewer := p.mintPAT("Viewer", "1h")
	expired := p.mintPAT("Admin", "-1m")
	admin2 := p.mintPAT("Admin", "1h", "ws2")

	t.Run("read", func(t *testing.T) {
		r := p.read("ws1", viewer)
		expectStatus(t, "Viewer", r, 200)
		var pair pairBody
		r.json(t, &pair)
		if pair.WorkspaceID != "ws1" || pair.Token1.Value != given1 || pair.Token2.Value != given2 || pair.Token2.Serial != 2 {
			t.Fatalf("read: serials %d %d", pair.Token1.Serial, pair.Token2.Serial)
		}
		if _, err := time.Parse(time.RFC3339, pair.Token1.CreatedAt); err != nil {
			t.Fatal(err)
		}
		expectStatus(t, "Admin scoped to ws1", p.read("ws1", admin1), 200)
		expectStatus(t, "expired", p.read("ws1", expired), 401)
		expectStatus(t, "unknown PAT", p.read("ws1", "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"), 401)
		expectStatus(t, "streaming token as PAT", p.read("ws1", given1), 401)
		expectStatus(t, "not scoped", p.read("ws1", admin2), 403)
		expectStatus(t, "unknown workspace", p.read("ws9", viewer), 404)
		expectStatus(t, "PAT on the check", p.broker("ws1", viewer), 401)
		if calls := p.calls("?endpoint=read"); len(calls) != 7 || calls[0].TokenState != "pat" || calls[0].TokenSerial != 0 {
			t.Fatalf("read calls: %+v", calls)
		}
	})

	t.Run("rotate", func(t *testing.T) {
		expectStatus(t, "Viewer", p.rotate("ws1", viewer), 403)
		expectStatus(t, "expired", p.rotate("ws1", expired), 401)
		expectStatus(t, "not scoped", p.rotate("ws1", admin2), 403)
		expectStatus(t, "GET", p.do(p.client, "GET", p.URL+"/workspaces/ws1/tokens/rotate", nil, "Authorization", "Bearer "+admin1), 405)
		if w := p.workspace("ws1"); w.Rotations != 0 || w.Token1.Value != given1 {
			t.Fatalf("refused rotations rotated: %d", w.Rotations)
		}
		r := p.rotate("ws1", admin1)
		expectStatus(t, "Admin", r, 200)
		var pair pairBody
		r.json(t, &pair)
		if pair.Token1.Value != given2 || pair.Token1.Serial != 2 || !generated.MatchString(pair.Token2.Value) || pair.Token2.Serial != 5 {
			t.Fatalf("Token 2 not promoted: serials %d %d", pair.Token1.Serial, pair.Token2.Serial)
		}
		w := p.workspace("ws1")
		if w.Rotations != 1 || len(w.Deactivated) != 1 || w.Deactivated[0].Serial != 1 || w.Deactivated[0].Value != given1 {
			t.Fatalf("after one rotation: %d rotations, %d deactivated", w.Rotations, len(w.Deactivated))
		}
		expectStatus(t, "deactivated Token 1", p.broker("ws1", given1), 401)
		expectStatus(t, "new Token 1", p.broker("ws1", given2), 200)
		expectStatus(t, "new Token 2", p.broker("ws1", pair.Token2.Value), 200)
		calls := p.calls("?endpoint=broker&workspace=ws1")
		if last := calls[len(calls)-3]; last.TokenState != "deactivated" || last.TokenSerial != 1 || last.Status != 401 {
			t.Fatalf("check with the deactivated token recorded as %+v", last)
		}
		// Not idempotent: every call rotates.
		expectStatus(t, "again", p.rotate("ws1", adminAll), 200)
		if w := p.workspace("ws1"); w.Rotations != 2 || w.Token1.Serial != 5 {
			t.Fatalf("second rotation: %d rotations, Token 1 serial %d", w.Rotations, w.Token1.Serial)
		}
		rotations := p.calls("?endpoint=rotate")
		if n := len(rotations); n != 6 || !rotations[4].Acted || rotations[4].Status != 200 || rotations[0].Acted {
			t.Fatalf("rotate calls: %+v", rotations)
		}
	})

	t.Run("lostResponse", func(t *testing.T) {
		p.admin("DELETE", "/admin/calls", nil, 200, nil)
		before := p.workspace("ws1")
		p.fault("rotate", "lostResponse", 1, 0)
		expectNoResponse(t, "rotate", p.rotate("ws1", admin1))
		after := p.workspace("ws1")
		if after.Rotations != before.Rotations+1 || after.Token1.Serial != before.Token2.Serial {
			t.Fatalf("rotations %d -> %d, Token 1 serial %d (Token 2 was %d)", before.Rotations, after.Rotations, after.Token1.Serial, before.Token2.Serial)
		}
		calls := p.calls("?endpoint=rotate")
		if len(calls) != 1 || calls[0].Status != 0 || !calls[0].Acted || calls[0].Fault != "lostResponse" || calls[0].Workspace != "ws1" {
			t.Fatalf("calls: %+v", calls)
		}
		expectStatus(t, "after the fault", p.rotate("ws1", admin1), 200)
	})

	t.Run("faults", func(t *testing.T) {
		p.admin("DELETE", "/admin/calls", nil, 200, nil)
		start := p.workspace("ws1")
		token := start.Token1.Value

		p.fault("rotate", "status500", 1, 0)
		expectStatus(t, "status500", p.rotate("ws1", admin1), 500)
		p.fault("rotate", "reset", 1, 0)
		expectNoResponse(t, "reset", p.rotate("ws1", admin1))
		p.fault("rotate", "timeout", 1, 0)
		quick := &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
		began := time.Now()
		expectNoResponse(t, "timeout", p.do(quick, "POST", p.URL+"/workspaces/ws1/tokens/rotate", nil, "Authorization", "Bearer "+admin1))
		if elapsed := time.Since(began); elapsed > 5*time.Second {
			t.Fatalf("timeout took %s", elapsed)
		}
		if w := p.workspace("ws1"); w.Rotations != start.Rotations {
			t.Fatalf("faults without acting rotated: %d -> %d", start.Rotations, w.Rotations)
		}
		calls := p.calls("?endpoint=rotate")
		if len(calls) != 3 || calls[0].Status != 500 || calls[1].Status != 0 || calls[1].Fault != "reset" ||
			calls[2].Status != 0 || calls[2].Fault != "timeout" || calls[0].Acted || calls[1].Acted || calls[2].Acted {
			t.Fatalf("calls: %+v", calls)
		}

		p.fault("broker", "latency", 2, 300)
		began = time.Now()
		expectStatus(t, "latency", p.broker("ws1", token), 200)
		if elapsed := time.Since(began); elapsed < 300*time.Millisecond {
			t.Fatalf("latency: answered after %s", elapsed)
		}
		// "*" matches every endpoint; count 0 lasts until cleared; the first queued fault wins.
		p.admin("DELETE", "/admin/faults", nil, 200, nil)
		p.fault("*", "status500", 0, 0)
		p.fault("broker", "reset", 0, 0)
		for range 3 {
			expectStatus(t, "persistent", p.broker("ws1", token), 500)
		}
		expectStatus(t, "persistent on read", p.read("ws1", viewer), 500)
		p.admin("DELETE", "/admin/faults", nil, 200, nil)
		expectStatus(t, "cleared", p.broker("ws1", token), 200)
		p.admin("POST", "/admin/faults", map[string]any{"endpoint": "broker", "kind": "explode"}, 400, nil)
		p.admin("POST", "/admin/faults", map[string]any{"endpoint": "brokers", "kind": "reset"}, 400, nil)
	})

	t.Run("portal rotate", func(t *testing.T) {
		since := time.Now().UTC().Format(time.RFC3339Nano)
		before := p.workspace("ws2")
		p.admin("POST", "/admin/workspaces/ws2/rotate", nil, 200, nil)
		after := p.workspace("ws2")
		if after.Token1.Serial != before.Token2.Serial || after.Rotations != before.Rotations+1 {
			t.Fatalf("portal rotation: serial %d (Token 2 was %d)", after.Token1.Serial, before.Token2.Serial)
		}
		calls := p.calls("?since=" + since)
		if len(calls) != 1 || calls[0].Endpoint != "portal-rotate" || !calls[0].Acted || calls[0].Workspace != "ws2" {
			t.Fatalf("calls since %s: %+v", since, calls)
		}
		if calls := p.calls("?endpoint=rotate&since=" + since); len(calls) != 0 {
			t.Fatalf("portal rotation counted as an API rotation: %+v", calls)
		}
		p.admin("POST", "/admin/workspaces/ws9/rotate", nil, 404, nil)
	})

	t.Run("down and up", func(t *testing.T) {
		token := p.workspace("ws1").Token1.Value
		// A kept-alive connection does not survive the platform going down either.
		pooled := &http.Client{Timeout: 5 * time.Second}
		expectStatus(t, "pooled, before", p.do(pooled, "GET", p.URL+"/workspaces/ws1/broker/librdkafka", nil,
			"Authorization", "Bearer "+token, "Accept", "application/json"), 200)
		p.admin("POST", "/admin/down", map[string]any{"seconds": 60}, 200, nil)
		r := p.broker("ws1", token)
		if !errors.Is(r.err, syscall.ECONNREFUSED) {
			t.Fatalf("while down: %v, status %d", r.err, r.status)
		}
		r = p.do(pooled, "GET", p.URL+"/workspaces/ws1/broker/librdkafka", nil, "Authorization", "Bearer "+token, "Accept", "application/json")
		if r.err == nil {
			t.Fatalf("pooled connection answered while down: %d", r.status)
		}
		p.admin("GET", "/admin/healthz", nil, 200, nil)
		p.admin("POST", "/admin/up", nil, 200, nil)
		expectStatus(t, "after up", p.broker("ws1", token), 200)

		p.admin("POST", "/admin/down", map[string]any{"seconds": 1}, 200, nil)
		if r := p.broker("ws1", token); !errors.Is(r.err, syscall.ECONNREFUSED) {
			t.Fatalf("while down for 1 s: %v, status %d", r.err, r.status)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			r := p.broker("ws1", token)
			if r.err == nil {
				expectStatus(t, "back by itself", r, 200)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not back 5 s after a 1 s outage: %v", r.err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("given PAT", func(t *testing.T) {
		// A PAT minted elsewhere (here: by the platform's own format, unsigned) is accepted once given.
		given := (&platform{patKey: []byte("elsewhere")}).mintPAT(pat{role: "Viewer", exp: time.Now().Add(time.Hour).Unix()})
		p.secrets[given] = true
		expectStatus(t, "before", p.read("ws1", given), 401)
		p.admin("POST", "/admin/pats", map[string]string{"pat": given}, 201, nil)
		expectStatus(t, "after", p.read("ws1", given), 200)
	})

	p.workspace("ws1")
	p.workspace("ws2")
	output := p.stop()
	for _, want := range []string{"endpoint=rotate", "endpoint=broker", "serial=1 state=current1", "fault=lostResponse"} {
		if !strings.Contains(output, want) {
			t.Errorf("the log lacks %q", want)
		}
	}
	leaked := 0
	for secret := range p.secrets {
		if strings.Contains(output, secret) {
			leaked++
		}
	}
	if leaked > 0 {
		t.Fatalf("%d of %d secrets (tokens, PATs, the broker password) appear in the platform's output", leaked, len(p.secrets))
	}
	if len(p.secrets) < 15 {
		t.Fatalf("only %d secrets collected", len(p.secrets))
	}
	if testing.Verbose() {
		fmt.Printf("platform output: %d lines, none with any of %d secrets\n", strings.Count(output, "\n"), len(p.secrets))
	}
}

func TestSelfSignedTLS(t *testing.T) {
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	p := startPlatform(t, "--self-signed-ca-out", caFile, "--broker-password", "custom-sentinel-b4d")
	if !strings.HasPrefix(p.URL, "https://127.0.0.1:") || !strings.HasPrefix(p.Admin, "http://127.0.0.1:") {
		t.Fatalf("ready: %s %s", p.URL, p.Admin)
	}
	p.secrets["custom-sentinel-b4d"] = true
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA in the file")
	}
	p.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: pool}}}
	p.admin("POST", "/admin/workspaces", map[string]string{"id": "ws1"}, 201, nil)
	w := p.workspace("ws1")
	r := p.broker("ws1", w.Token1.Value)
	expectStatus(t, "check over TLS", r, 200)
	var config map[string]string
	r.json(t, &config)
	if config["sasl.password"] != "custom-sentinel-b4d" {
		t.Fatal("--broker-password not used")
	}
	// Faults hijack TLS connections as well.
	p.fault("broker", "reset", 1, 0)
	expectNoResponse(t, "reset over TLS", p.broker("ws1", w.Token1.Value))
	// A client without the CA refuses the platform.
	plain := &http.Client{Timeout: 5 * time.Second}
	if _, err := plain.Get(p.URL + "/workspaces/ws1/broker/librdkafka"); err == nil {
		t.Fatal("a client without the CA trusted the platform")
	}
	output := p.stop()
	for secret := range p.secrets {
		if strings.Contains(output, secret) {
			t.Fatal("a secret appears in the platform's output")
		}
	}
}
