// Command platform plays the Quix streaming platform in the operator's tests (built by
// tests/go-helper.sh platform): workspaces each holding a pair of streaming tokens (Token 1 and
// Token 2, both valid) and every token they ever deactivated, the broker check every Quix client
// makes, reading and rotating the pair with a personal access token (PAT), and an admin API on a
// second listener through which tests create workspaces, mint PATs, inject faults, take the
// public listener down and read the record of every call. The contract is in README.md.
//
// Its own log (stderr) never shows a token value, a PAT or the broker password: requests are
// logged by method, path, endpoint, status, the bearer token's serial and the X-Client header.
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// defaultBrokerPassword is the broker password the check hands out unless --broker-password is
// given; tests use it as a sentinel that must never appear in the operator's output. It is kept
// out of the flag's default so that `platform -h` does not print it.
const defaultBrokerPassword = "fake-broker-password-5ee7c0de"

// fakeBrokerCA is the "CA" the check hands out (base64-encoded) as ssl.ca.cert.
const fakeBrokerCA = "-----BEGIN CERTIFICATE-----\nZmFrZSBicm9rZXIgQ0EgZm9yIHN0cmVhbWluZy10b2tlbi1vcGVyYXRvciB0ZXN0cw==\n-----END CERTIFICATE-----\n"

// maxHold bounds how long a `timeout` fault holds a request when the fault names no latencyMs.
const maxHold = 120 * time.Second

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("platform", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "loopback `address` of the public (platform) API")
	adminListen := fs.String("admin-listen", "127.0.0.1:0", "loopback `address` of the admin (tests only) API")
	readyFile := fs.String("ready-file", "", "`file` to write the ready line to (atomically) once both listeners listen")
	brokerPassword := fs.String("broker-password", "", "the broker `password` the check returns (default: the sentinel in README.md)")
	tlsCert := fs.String("tls-cert", "", "PEM certificate (chain) `file` for the public listener (with --tls-key)")
	tlsKey := fs.String("tls-key", "", "PEM private key `file` for the public listener (with --tls-cert)")
	caOut := fs.String("self-signed-ca-out", "", "generate a CA and a certificate for 127.0.0.1, ::1 and localhost, serve the public listener with it and write the CA's PEM to this `file`")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "platform: unexpected arguments %q\n", fs.Args())
		return 2
	}
	logger := log.New(stderr, "platform: ", log.LstdFlags|log.Lmicroseconds)
	fail := func(format string, a ...any) int {
		logger.Printf(format, a...)
		return 1
	}

	publicAddr, err := loopbackAddress(*listen)
	if err != nil {
		return fail("--listen: %v", err)
	}
	adminAddr, err := loopbackAddress(*adminListen)
	if err != nil {
		return fail("--admin-listen: %v", err)
	}
	var tlsConfig *tls.Config
	switch {
	case *caOut != "" && (*tlsCert != "" || *tlsKey != ""):
		return fail("--self-signed-ca-out excludes --tls-cert and --tls-key")
	case (*tlsCert == "") != (*tlsKey == ""):
		return fail("--tls-cert and --tls-key go together")
	case *tlsCert != "":
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			return fail("loading --tls-cert/--tls-key: %v", err)
		}
		tlsConfig = serverTLS(cert)
	case *caOut != "":
		cert, err := selfSigned(*caOut)
		if err != nil {
			return fail("--self-signed-ca-out: %v", err)
		}
		tlsConfig = serverTLS(cert)
	}

	password := *brokerPassword
	if password == "" {
		password = defaultBrokerPassword
	}
	p := newPlatform(password, logger)
	public := &publicListener{handler: p, tlsConfig: tlsConfig, logger: logger}
	publicURL, err := public.start(publicAddr)
	if err != nil {
		return fail("public listener: %v", err)
	}
	adminLn, err := net.Listen("tcp", adminAddr)
	if err != nil {
		public.shutdown(context.Background())
		return fail("admin listener: %v", err)
	}
	adminSrv := &http.Server{
		Handler:           p.adminHandler(public),
		ErrorLog:          logger,
		ReadHeaderTimeout: 30 * time.Second,
	}
	go func() {
		if err := adminSrv.Serve(adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Printf("admin listener: %v", err)
		}
	}()

	ready, _ := json.Marshal(struct {
		URL   string `json:"url"`
		Admin string `json:"admin"`
	}{publicURL, "http://" + adminLn.Addr().String()})
	ready = append(ready, '\n')
	if *readyFile != "" {
		if err := writeAtomically(*readyFile, ready, 0o644); err != nil {
			public.shutdown(context.Background())
			adminSrv.Close()
			return fail("--ready-file: %v", err)
		}
	}
	if _, err := stdout.Write(ready); err != nil {
		logger.Printf("writing the ready line: %v", err)
	}
	logger.Printf("listening: public %s, admin http://%s", publicURL, adminLn.Addr())

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	sig := <-signals
	signal.Stop(signals)
	logger.Printf("%v: shutting down", sig)
	close(p.shutdown) // releases requests held by `timeout` faults
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	public.shutdown(ctx)
	if err := adminSrv.Shutdown(ctx); err != nil {
		adminSrv.Close()
	}
	logger.Printf("stopped")
	return 0
}

// loopbackAddress accepts host:port where host is a loopback IP (or "localhost", taken as
// 127.0.0.1) and refuses anything else, including an empty host (all interfaces).
func loopbackAddress(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return "", fmt.Errorf("%q is not a loopback address: the platform listens on loopback only", addr)
	}
	return net.JoinHostPort(host, port), nil
}

func writeAtomically(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// serverTLS serves HTTP/1.1 only, so that faults can hijack the connection.
func serverTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}
}

// selfSigned makes a CA and a server certificate it signs for 127.0.0.1, ::1 and localhost,
// writes the CA's PEM to caOut and returns the server certificate.
func selfSigned(caOut string) (tls.Certificate, error) {
	now := time.Now()
	serial := func() *big.Int {
		n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
		return n
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	caTemplate := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "streaming-token-operator test platform CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	template := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, caCert, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	if err := writeAtomically(caOut, caPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// ---------------------------------------------------------------------------------------------
// State

type token struct {
	value         string
	serial        int
	workspace     string
	createdAt     time.Time
	deactivatedAt time.Time // zero while Token 1 or Token 2
}

type workspace struct {
	id              string
	token1, token2  *token
	deactivated     []*token // oldest first
	apiRotations    int
	portalRotations int
}

type pat struct {
	role       string
	exp        int64 // unix seconds
	workspaces []string
}

type fault struct {
	ID        int    `json:"id"`
	Endpoint  string `json:"endpoint"`
	Kind      string `json:"kind"`
	Count     int    `json:"count"` // matching requests still to hit; 0: every one until cleared
	LatencyMs int    `json:"latencyMs"`
	Workspace string `json:"workspace,omitempty"`
}

type call struct {
	Time           time.Time `json:"-"`
	TimeText       string    `json:"time"`
	Endpoint       string    `json:"endpoint"`
	Method         string    `json:"method"`
	Path           string    `json:"path"`
	Workspace      string    `json:"workspace"`
	Status         int       `json:"status"`
	Fault          string    `json:"fault"`
	TokenSerial    int       `json:"tokenSerial"`
	TokenState     string    `json:"tokenState"`
	TokenWorkspace string    `json:"tokenWorkspace"`
	Client         string    `json:"client"`
	XVersion       string    `json:"xVersion"`
	Acted          bool      `json:"acted"`
}

type platform struct {
	brokerPassword string
	patKey         []byte
	logger         *log.Logger
	shutdown       chan struct{}

	mu          sync.Mutex
	nextSerial  int
	workspaces  map[string]*workspace
	tokens      map[string]*token // by value, every token ever issued
	pats        map[string]*pat
	faults      []*fault
	nextFaultID int
	calls       []*call
}

func newPlatform(brokerPassword string, logger *log.Logger) *platform {
	key := make([]byte, 32)
	rand.Read(key)
	return &platform{
		brokerPassword: brokerPassword,
		patKey:         key,
		logger:         logger,
		shutdown:       make(chan struct{}),
		workspaces:     map[string]*workspace{},
		tokens:         map[string]*token{},
		pats:           map[string]*pat{},
	}
}

const alphanumerics = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// randomAlphanumerics draws n characters uniformly from [A-Za-z0-9].
func randomAlphanumerics(n int) string {
	out := make([]byte, 0, n)
	buf := make([]byte, 64)
	for len(out) < n {
		rand.Read(buf)
		for _, b := range buf {
			if b < 248 && len(out) < n { // 248 = 4 * 62: no modulo bias
				out = append(out, alphanumerics[int(b)%62])
			}
		}
	}
	return string(out)
}

func correlationID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// issueLocked creates a token for ws with value (a new random one when empty).
func (p *platform) issueLocked(ws, value string, now time.Time) *token {
	for value == "" {
		value = "sdk-" + randomAlphanumerics(40)
		if _, taken := p.tokens[value]; taken {
			value = ""
		}
	}
	p.nextSerial++
	t := &token{value: value, serial: p.nextSerial, workspace: ws, createdAt: now}
	p.tokens[value] = t
	return t
}

// rotateLocked deactivates Token 1, makes Token 2 Token 1 and issues a new Token 2.
func (p *platform) rotateLocked(w *workspace, now time.Time) {
	w.token1.deactivatedAt = now
	w.deactivated = append(w.deactivated, w.token1)
	w.token1 = w.token2
	w.token2 = p.issueLocked(w.id, "", now)
}

// describeLocked names a bearer credential without its value: the serial of a streaming token
// the platform knows, its state in its own workspace, and that workspace.
func (p *platform) describeLocked(bearer string) (serial int, state, ws string) {
	if bearer == "" {
		return 0, "unknown", ""
	}
	if t, ok := p.tokens[bearer]; ok {
		w := p.workspaces[t.workspace]
		switch t {
		case w.token1:
			state = "current1"
		case w.token2:
			state = "current2"
		default:
			state = "deactivated"
		}
		return t.serial, state, t.workspace
	}
	if _, ok := p.pats[bearer]; ok {
		return 0, "pat", ""
	}
	return 0, "unknown", ""
}

// takeFaultLocked returns the first queued fault matching the request, using up one of its count.
func (p *platform) takeFaultLocked(endpoint, ws string) *fault {
	for i, f := range p.faults {
		if f.Endpoint != "*" && f.Endpoint != endpoint {
			continue
		}
		if f.Workspace != "" && f.Workspace != ws {
			continue
		}
		taken := *f
		if f.Count > 0 {
			f.Count--
			if f.Count == 0 {
				p.faults = slices.Delete(p.faults, i, i+1)
			}
		}
		return &taken
	}
	return nil
}

type tokenBody struct {
	Value     string `json:"value"`
	Serial    int    `json:"serial"`
	CreatedAt string `json:"createdAt"`
}

type pairBody struct {
	WorkspaceID string    `json:"workspaceId"`
	Token1      tokenBody `json:"token1"`
	Token2      tokenBody `json:"token2"`
}

type deactivatedBody struct {
	Serial        int    `json:"serial"`
	Value         string `json:"value"`
	CreatedAt     string `json:"createdAt"`
	DeactivatedAt string `json:"deactivatedAt"`
}

type workspaceBody struct {
	pairBody
	Deactivated     []deactivatedBody `json:"deactivated"`
	Rotations       int               `json:"rotations"`
	APIRotations    int               `json:"apiRotations"`
	PortalRotations int               `json:"portalRotations"`
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func tokenJSON(t *token) tokenBody {
	return tokenBody{Value: t.value, Serial: t.serial, CreatedAt: rfc3339(t.createdAt)}
}

func pairLocked(w *workspace) pairBody {
	return pairBody{WorkspaceID: w.id, Token1: tokenJSON(w.token1), Token2: tokenJSON(w.token2)}
}

func workspaceLocked(w *workspace) workspaceBody {
	body := workspaceBody{
		pairBody:        pairLocked(w),
		Deactivated:     []deactivatedBody{},
		Rotations:       w.apiRotations + w.portalRotations,
		APIRotations:    w.apiRotations,
		PortalRotations: w.portalRotations,
	}
	for _, t := range w.deactivated {
		body.Deactivated = append(body.Deactivated, deactivatedBody{
			Serial: t.serial, Value: t.value, CreatedAt: rfc3339(t.createdAt), DeactivatedAt: rfc3339(t.deactivatedAt),
		})
	}
	return body
}

type message struct {
	Message       string `json:"message"`
	CorrelationID string `json:"correlationId"`
}

func errorBody(text string) message { return message{Message: text, CorrelationID: correlationID()} }

func writeJSON(w http.ResponseWriter, status int, body any) {
	data, err := json.Marshal(body)
	if err != nil {
		status, data = http.StatusInternalServerError, []byte(`{"message":"encoding the response failed"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(append(data, '\n'))
}

// ---------------------------------------------------------------------------------------------
// Public API

// classify names the public endpoint a path is for, and its workspace.
func classify(path string) (endpoint, ws string) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) < 3 || parts[0] != "workspaces" || parts[1] == "" {
		return "other", ""
	}
	ws = parts[1]
	switch {
	case len(parts) == 4 && parts[2] == "broker" && parts[3] == "librdkafka":
		return "broker", ws
	case len(parts) == 3 && parts[2] == "tokens":
		return "read", ws
	case len(parts) == 4 && parts[2] == "tokens" && parts[3] == "rotate":
		return "rotate", ws
	}
	return "other", ws
}

// bearer returns the credential of an `Authorization: Bearer <credential>` header (the scheme
// in any case), or "".
func bearer(r *http.Request) string {
	scheme, credential, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return ""
	}
	return strings.TrimSpace(credential)
}

func acceptsJSON(r *http.Request) bool {
	for _, value := range r.Header.Values("Accept") {
		if strings.Contains(strings.ToLower(value), "application/json") {
			return true
		}
	}
	return false
}

var endpointMethods = map[string]string{"broker": http.MethodGet, "read": http.MethodGet, "rotate": http.MethodPost}

// ServeHTTP serves the public API. The call is recorded as it arrives (so that a test counts it
// even when a fault closes the connection) and completed, under the same lock as the action,
// before any response is written.
func (p *platform) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A consumed body lets the server notice a client that gives up (it cancels r.Context()).
	io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	endpoint, ws := classify(r.URL.Path)
	credential := bearer(r)
	now := time.Now()
	rec := &call{
		Time: now, TimeText: now.UTC().Format(time.RFC3339Nano), Endpoint: endpoint, Method: r.Method,
		Path: r.URL.Path, Workspace: ws, Client: r.Header.Get("X-Client"), XVersion: r.Header.Get("X-Version"),
	}
	p.mu.Lock()
	rec.TokenSerial, rec.TokenState, rec.TokenWorkspace = p.describeLocked(credential)
	f := p.takeFaultLocked(endpoint, ws)
	if f != nil {
		rec.Fault = f.Kind
	}
	p.calls = append(p.calls, rec)
	p.mu.Unlock()

	logCall := func(note string) {
		p.mu.Lock()
		line := fmt.Sprintf("public %s %s endpoint=%s status=%d serial=%d state=%s client=%q fault=%s acted=%t",
			rec.Method, rec.Path, rec.Endpoint, rec.Status, rec.TokenSerial, rec.TokenState, rec.Client, rec.Fault, rec.Acted)
		p.mu.Unlock()
		p.logger.Print(line + note)
	}

	kind := ""
	if f != nil {
		kind = f.Kind
	}
	switch kind {
	case "status500":
		p.mu.Lock()
		rec.Status = http.StatusInternalServerError
		p.mu.Unlock()
		logCall("")
		writeJSON(w, http.StatusInternalServerError, errorBody("Internal server error"))
		return
	case "reset":
		logCall(" (connection reset)")
		hangUp(w, true)
		return
	case "timeout":
		hold := maxHold
		if f.LatencyMs > 0 {
			hold = time.Duration(f.LatencyMs) * time.Millisecond
		}
		logCall(fmt.Sprintf(" (held up to %s)", hold))
		timer := time.NewTimer(hold)
		select {
		case <-r.Context().Done():
		case <-timer.C:
		case <-p.shutdown:
		}
		timer.Stop()
		hangUp(w, false)
		return
	case "latency":
		timer := time.NewTimer(time.Duration(f.LatencyMs) * time.Millisecond)
		select {
		case <-timer.C:
		case <-r.Context().Done():
			timer.Stop()
			logCall(" (client gave up during latency)")
			hangUp(w, false)
			return
		}
	}

	lost := kind == "lostResponse"
	status, body := p.act(r, endpoint, ws, credential, rec, lost)
	if lost {
		logCall(" (response lost)")
		hangUp(w, false)
		return
	}
	logCall("")
	if status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", endpointMethods[endpoint])
	}
	writeJSON(w, status, body)
}

// act answers a public request and completes its record, under one lock.
func (p *platform) act(r *http.Request, endpoint, ws, credential string, rec *call, lost bool) (int, any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rec.TokenSerial, rec.TokenState, rec.TokenWorkspace = p.describeLocked(credential)
	status, body, acted := p.actLocked(r, endpoint, ws, credential)
	rec.Acted = acted
	if !lost {
		rec.Status = status
	}
	return status, body
}

func (p *platform) actLocked(r *http.Request, endpoint, ws, credential string) (int, any, bool) {
	if endpoint == "other" {
		return http.StatusNotFound, errorBody("Not found"), false
	}
	if r.Method != endpointMethods[endpoint] {
		return http.StatusMethodNotAllowed, errorBody("Method not allowed"), false
	}
	w := p.workspaces[ws]
	switch endpoint {
	case "broker":
		if !acceptsJSON(r) {
			return http.StatusUnsupportedMediaType, errorBody("Unsupported media type: Accept must include application/json"), false
		}
		if w == nil {
			return http.StatusNotFound, errorBody("Workspace not found"), false
		}
		if credential == "" || (credential != w.token1.value && credential != w.token2.value) {
			return http.StatusUnauthorized, errorBody("User is not authenticated"), false
		}
		return http.StatusOK, map[string]string{
			"bootstrap.servers": "127.0.0.1:9092",
			"security.protocol": "SASL_SSL",
			"sasl.mechanism":    "SCRAM-SHA-256",
			"sasl.username":     ws + "-user",
			"sasl.password":     p.brokerPassword,
			"ssl.ca.cert":       base64.StdEncoding.EncodeToString([]byte(fakeBrokerCA)),
		}, false
	case "read", "rotate":
		pt, ok := p.pats[credential]
		if credential == "" || !ok || time.Now().Unix() >= pt.exp {
			return http.StatusUnauthorized, errorBody("User is not authenticated"), false
		}
		if len(pt.workspaces) > 0 && !slices.Contains(pt.workspaces, ws) {
			return http.StatusForbidden, errorBody("Forbidden: the token is not scoped to this workspace"), false
		}
		if endpoint == "rotate" && pt.role != "Admin" {
			return http.StatusForbidden, errorBody("Forbidden: rotating tokens needs the Admin role"), false
		}
		if w == nil {
			return http.StatusNotFound, errorBody("Workspace not found"), false
		}
		if endpoint == "read" {
			return http.StatusOK, pairLocked(w), false
		}
		p.rotateLocked(w, time.Now())
		w.apiRotations++
		return http.StatusOK, pairLocked(w), true
	}
	return http.StatusNotFound, errorBody("Not found"), false
}

// hangUp closes the connection without writing a response; with reset, with SO_LINGER 0 (the
// peer sees a TCP reset) where the connection is TCP.
func hangUp(w http.ResponseWriter, reset bool) {
	hijacker, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler) // the server closes the connection without a response
	}
	conn, _, err := hijacker.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	raw := conn
	if tlsConn, ok := conn.(*tls.Conn); ok {
		raw = tlsConn.NetConn()
	}
	if tcp, ok := raw.(*net.TCPConn); ok && reset {
		tcp.SetLinger(0)
	}
	raw.Close()
}

// ---------------------------------------------------------------------------------------------
// The public listener, which the admin API can take down and bring back on the same address.

type publicListener struct {
	handler   http.Handler
	tlsConfig *tls.Config
	logger    *log.Logger

	mu         sync.Mutex
	addr       string       // the bound host:port, fixed after start
	srv        *http.Server // nil while down
	generation int          // invalidates pending re-open timers
	timer      *time.Timer
	stopped    bool
}

// start listens on addr and returns the public URL.
func (l *publicListener) start(addr string) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.addr = addr
	if err := l.openLocked(); err != nil {
		return "", err
	}
	scheme := "http"
	if l.tlsConfig != nil {
		scheme = "https"
	}
	return scheme + "://" + l.addr, nil
}

func (l *publicListener) openLocked() error {
	if l.srv != nil {
		return nil
	}
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return err
	}
	l.addr = ln.Addr().String()
	if l.tlsConfig != nil {
		ln = tls.NewListener(ln, l.tlsConfig)
	}
	srv := &http.Server{Handler: l.handler, ErrorLog: l.logger, ReadHeaderTimeout: 30 * time.Second}
	l.srv = srv
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.logger.Printf("public listener: %v", err)
		}
	}()
	return nil
}

// down closes the listener and every connection; it re-opens after d (never when d is 0).
func (l *publicListener) down(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.generation++
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	if l.srv != nil {
		l.srv.Close()
		l.srv = nil
	}
	if d > 0 {
		generation := l.generation
		var reopen func()
		reopen = func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.generation != generation || l.stopped {
				return
			}
			if err := l.openLocked(); err != nil {
				l.logger.Printf("re-opening the public listener: %v (retrying)", err)
				l.timer = time.AfterFunc(200*time.Millisecond, reopen)
				return
			}
			l.logger.Printf("public listener up again on %s", l.addr)
		}
		l.timer = time.AfterFunc(d, reopen)
	}
}

func (l *publicListener) up() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.generation++
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	return l.openLocked()
}

func (l *publicListener) isUp() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.srv != nil
}

func (l *publicListener) shutdown(ctx context.Context) {
	l.mu.Lock()
	l.stopped = true
	l.generation++
	if l.timer != nil {
		l.timer.Stop()
	}
	srv := l.srv
	l.srv = nil
	l.mu.Unlock()
	if srv != nil {
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Admin API

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(status int) {
	s.status = status
	s.ResponseWriter.WriteHeader(status)
}

// decode reads a JSON body into v, refusing unknown fields (a typo in a test fails loudly).
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	data, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil && len(bytes.TrimSpace(data)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		err = dec.Decode(v)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody("bad request body: "+err.Error()))
		return false
	}
	return true
}

func badRequest(w http.ResponseWriter, text string) {
	writeJSON(w, http.StatusBadRequest, errorBody(text))
}

var (
	faultEndpoints = []string{"broker", "read", "rotate", "*"}
	faultKinds     = []string{"status500", "timeout", "latency", "lostResponse", "reset"}
)

func (p *platform) adminHandler(public *publicListener) http.Handler {
	mux := http.NewServeMux()

	mux.HandleFunc("GET /admin/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "publicUp": public.isUp()})
	})

	mux.HandleFunc("POST /admin/workspaces", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			ID     string `json:"id"`
			Token1 string `json:"token1"`
			Token2 string `json:"token2"`
		}
		if !decode(w, r, &body) {
			return
		}
		if body.ID == "" || strings.ContainsAny(body.ID, "/?#% ") {
			badRequest(w, "id must be non-empty, without '/', '?', '#', '%' or spaces")
			return
		}
		if body.Token1 != "" && body.Token1 == body.Token2 {
			badRequest(w, "token1 and token2 must differ")
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if _, exists := p.workspaces[body.ID]; exists {
			writeJSON(w, http.StatusConflict, errorBody("workspace already exists"))
			return
		}
		for _, value := range []string{body.Token1, body.Token2} {
			if _, known := p.tokens[value]; value != "" && known {
				writeJSON(w, http.StatusConflict, errorBody("a given token value is already known to the platform"))
				return
			}
		}
		now := time.Now()
		ws := &workspace{id: body.ID}
		ws.token1 = p.issueLocked(body.ID, body.Token1, now)
		ws.token2 = p.issueLocked(body.ID, body.Token2, now)
		p.workspaces[body.ID] = ws
		writeJSON(w, http.StatusCreated, pairLocked(ws))
	})

	mux.HandleFunc("GET /admin/workspaces/{ws}", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		ws := p.workspaces[r.PathValue("ws")]
		if ws == nil {
			writeJSON(w, http.StatusNotFound, errorBody("Workspace not found"))
			return
		}
		writeJSON(w, http.StatusOK, workspaceLocked(ws))
	})

	mux.HandleFunc("POST /admin/workspaces/{ws}/rotate", func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		p.mu.Lock()
		defer p.mu.Unlock()
		ws := p.workspaces[r.PathValue("ws")]
		if ws == nil {
			writeJSON(w, http.StatusNotFound, errorBody("Workspace not found"))
			return
		}
		p.rotateLocked(ws, now)
		ws.portalRotations++
		p.calls = append(p.calls, &call{
			Time: now, TimeText: now.UTC().Format(time.RFC3339Nano), Endpoint: "portal-rotate", Method: r.Method,
			Path: r.URL.Path, Workspace: ws.id, Status: http.StatusOK, TokenState: "unknown",
			Client: r.Header.Get("X-Client"), Acted: true,
		})
		writeJSON(w, http.StatusOK, workspaceLocked(ws))
	})

	mux.HandleFunc("POST /admin/pats", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Role       string   `json:"role"`
			ExpiresIn  string   `json:"expiresIn"`
			Workspaces []string `json:"workspaces"`
			PAT        string   `json:"pat"`
		}
		if !decode(w, r, &body) {
			return
		}
		var value string
		var claims pat
		if body.PAT != "" {
			if body.Role != "" || body.ExpiresIn != "" || body.Workspaces != nil {
				badRequest(w, "give either pat (a JWT to accept as it is) or role/expiresIn/workspaces")
				return
			}
			parsed, err := parsePAT(body.PAT)
			if err != nil {
				badRequest(w, "pat: "+err.Error())
				return
			}
			value, claims = body.PAT, parsed
		} else {
			if body.Role != "Admin" && body.Role != "Viewer" {
				badRequest(w, `role must be "Admin" or "Viewer"`)
				return
			}
			expiresIn := time.Hour
			if body.ExpiresIn != "" {
				d, err := time.ParseDuration(body.ExpiresIn)
				if err != nil {
					badRequest(w, "expiresIn: "+err.Error())
					return
				}
				expiresIn = d
			}
			claims = pat{role: body.Role, exp: time.Now().Add(expiresIn).Unix(), workspaces: body.Workspaces}
			value = p.mintPAT(claims)
		}
		p.mu.Lock()
		p.pats[value] = &claims
		p.mu.Unlock()
		writeJSON(w, http.StatusCreated, map[string]string{"pat": value, "expiresAt": rfc3339(time.Unix(claims.exp, 0))})
	})

	mux.HandleFunc("GET /admin/faults", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		list := []fault{}
		for _, f := range p.faults {
			list = append(list, *f)
		}
		writeJSON(w, http.StatusOK, list)
	})

	mux.HandleFunc("POST /admin/faults", func(w http.ResponseWriter, r *http.Request) {
		var f fault
		if !decode(w, r, &f) {
			return
		}
		switch {
		case !slices.Contains(faultEndpoints, f.Endpoint):
			badRequest(w, `endpoint must be one of "broker", "read", "rotate", "*"`)
		case !slices.Contains(faultKinds, f.Kind):
			badRequest(w, `kind must be one of "status500", "timeout", "latency", "lostResponse", "reset"`)
		case f.Count < 0 || f.LatencyMs < 0:
			badRequest(w, "count and latencyMs must not be negative")
		default:
			p.mu.Lock()
			defer p.mu.Unlock()
			p.nextFaultID++
			f.ID = p.nextFaultID
			p.faults = append(p.faults, &f)
			writeJSON(w, http.StatusCreated, f)
		}
	})

	mux.HandleFunc("DELETE /admin/faults", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		cleared := len(p.faults)
		p.faults = nil
		writeJSON(w, http.StatusOK, map[string]int{"cleared": cleared})
	})

	mux.HandleFunc("POST /admin/down", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Seconds float64 `json:"seconds"`
		}
		if !decode(w, r, &body) {
			return
		}
		if body.Seconds < 0 {
			badRequest(w, "seconds must not be negative")
			return
		}
		d := time.Duration(body.Seconds * float64(time.Second))
		public.down(d)
		response := map[string]any{"down": true}
		if d > 0 {
			response["until"] = time.Now().Add(d).UTC().Format(time.RFC3339Nano)
		}
		writeJSON(w, http.StatusOK, response)
	})

	mux.HandleFunc("POST /admin/up", func(w http.ResponseWriter, r *http.Request) {
		if err := public.up(); err != nil {
			writeJSON(w, http.StatusInternalServerError, errorBody("re-opening the public listener: "+err.Error()))
			return
		}
		writeJSON(w, http.StatusOK, map[string]bool{"up": true})
	})

	mux.HandleFunc("GET /admin/calls", func(w http.ResponseWriter, r *http.Request) {
		query := r.URL.Query()
		var since time.Time
		if text := query.Get("since"); text != "" {
			t, err := time.Parse(time.RFC3339Nano, text)
			if err != nil {
				badRequest(w, "since: "+err.Error())
				return
			}
			since = t
		}
		endpoint, ws := query.Get("endpoint"), query.Get("workspace")
		p.mu.Lock()
		defer p.mu.Unlock()
		list := []call{}
		for _, c := range p.calls {
			if (endpoint == "" || c.Endpoint == endpoint) && (ws == "" || c.Workspace == ws) && !c.Time.Before(since) {
				list = append(list, *c)
			}
		}
		writeJSON(w, http.StatusOK, list)
	})

	mux.HandleFunc("DELETE /admin/calls", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		cleared := len(p.calls)
		p.calls = nil
		writeJSON(w, http.StatusOK, map[string]int{"cleared": cleared})
	})

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		mux.ServeHTTP(rec, r)
		p.logger.Printf("admin %s %s status=%d", r.Method, r.URL.Path, rec.status)
	})
}

// mintPAT makes a JWT-shaped PAT (HS256 with a per-process key) carrying claims.
func (p *platform) mintPAT(claims pat) string {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	payload, _ := json.Marshal(struct {
		Sub        string   `json:"sub"`
		Role       string   `json:"role"`
		Exp        int64    `json:"exp"`
		Workspaces []string `json:"workspaces,omitempty"`
	}{"test-automation", claims.role, claims.exp, claims.workspaces})
	signed := header + "." + enc.EncodeToString(payload)
	mac := hmac.New(sha256.New, p.patKey)
	mac.Write([]byte(signed))
	return signed + "." + enc.EncodeToString(mac.Sum(nil))
}

// parsePAT reads the claims of a JWT-shaped PAT given to the platform (its signature unchecked).
func parsePAT(value string) (pat, error) {
	parts := strings.Split(value, ".")
	if len(parts) != 3 {
		return pat{}, errors.New("not JWT-shaped (header.payload.signature)")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return pat{}, fmt.Errorf("payload: %v", err)
	}
	var claims struct {
		Role       string   `json:"role"`
		Exp        *int64   `json:"exp"`
		Workspaces []string `json:"workspaces"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return pat{}, fmt.Errorf("payload: %v", err)
	}
	if claims.Role == "" || claims.Exp == nil {
		return pat{}, errors.New(`payload needs "role" and "exp"`)
	}
	return pat{role: claims.Role, exp: *claims.Exp, workspaces: claims.Workspaces}, nil
}
