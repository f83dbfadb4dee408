// Command loadgen is the end-to-end load generator of the benchmarks: it holds one live stream
// per user, sends at a fixed total rate on an open-loop schedule, and records when each
// acknowledged message reached each recipient's stream.
//
// It is compiled so that the generator stays a small share of the 2-core machine it shares
// with the system under test. The plan (users, tokens, chats) comes from the Python side,
// which registers the users through the BFF; the accounting (lost, duplicated, persisted)
// happens there too, from the JSON this writes.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Member is a user of the run: who they are and where their stream lives.
type Member struct {
	UserID uint64 `json:"user_id"`
	Token  string `json:"token"`
	Server string `json:"server"`
}

// Route is a chat one member sends to; message i goes over route i % len(routes).
type Route struct {
	Sender     int    `json:"sender"`
	ChatID     string `json:"chat_id"`
	Recipients []int  `json:"recipients"`
}

// Plan is what the Python side hands over.
type Plan struct {
	Members     []Member `json:"members"`
	Routes      []Route  `json:"routes"`
	Rate        float64  `json:"rate"`
	Duration    float64  `json:"duration"`
	BodyBytes   int      `json:"body_bytes"`
	Run         string   `json:"run"`
	MaxInFlight int      `json:"max_in_flight"`
	Conns       int      `json:"conns"`
	Drain       float64  `json:"drain"`
	// Sends due within one tick leave together (their latency still runs from their own due
	// time): fewer wake-ups and fuller writes for the generator.
	TickMs float64 `json:"tick_ms"`
	// "chat" (our messaging servers over gRPC), "peer" (the centrifuge server over WebSocket),
	// or "history" (history pages from the history query service: History below).
	Target   string `json:"target"`
	PeerAddr string `json:"peer_addr"`
	// Receipts and typing on, as a chat app does: each stream's holder marks what it
	// received delivered and read (once a second per chat, the newest id), and a sender
	// says it is typing before sending (once per 3 s per chat).
	Receipts bool         `json:"receipts"`
	History  *HistoryPlan `json:"history"`
	// TLS to our gRPC servers (the cluster), verified against the CA in the PEM file TLSCA,
	// or the system's roots when it is empty.
	TLS   bool   `json:"tls"`
	TLSCA string `json:"tls_ca"`
}

// dialCredentials is how the generator dials our gRPC servers.
func dialCredentials(plan Plan) credentials.TransportCredentials {
	if !plan.TLS {
		return insecure.NewCredentials()
	}
	if plan.TLSCA == "" {
		return credentials.NewClientTLSFromCert(nil, "")
	}
	creds, err := credentials.NewClientTLSFromFile(plan.TLSCA, "")
	check(err)
	return creds
}

// transport is how the generator reaches the system under test.
type transport interface {
	// hold keeps member's live stream open until ctx ends; caughtUp is called once, when
	// the stream is ready to receive live events.
	hold(ctx context.Context, member Member, since func() float64, caughtUp func()) []receipt
	// send sends one message and returns its id, or an error code.
	send(ctx context.Context, sender Member, route Route, cmid, body string) (uint64, string)
	resumes() int
	redirects() int
	close()
}

// Result is what the Python side merges: times are seconds since the generator started.
type Result struct {
	// client message id -> [due, acknowledged, message id, recipient user ids, chat id]
	Sends map[string][]any `json:"sends"`
	// [client message id, recipient user id, arrival]
	Received   [][3]any       `json:"received"`
	Errors     map[string]int `json:"errors"`
	Overloaded int            `json:"overloaded"`
	Resumes    int            `json:"resumes"`
	Redirects  int            `json:"redirects"`
	// With receipts on: marks sent (MarkDelivered + MarkRead calls answered) and typing calls.
	Marks  int `json:"marks"`
	Typing int `json:"typing"`
	// Wall-clock nanoseconds of the first due send and of the last one, for CPU windows.
	SendStartUnixNs int64 `json:"send_start_unix_ns"`
	SendEndUnixNs   int64 `json:"send_end_unix_ns"`
}

type receipt struct {
	cmid string
	user uint64
	at   float64
}

type sent struct {
	due, acked float64
	id         uint64
}

func main() {
	planPath := flag.String("plan", "", "plan JSON written by python -m bench")
	outPath := flag.String("out", "", "where to write the result JSON")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the run here")
	procs := flag.Int("procs", 1, "GOMAXPROCS: one thread does the work with the fewest hand-offs")
	flag.Parse()
	runtime.GOMAXPROCS(*procs)
	if *profile != "" {
		file, err := os.Create(*profile)
		check(err)
		check(pprof.StartCPUProfile(file))
		defer pprof.StopCPUProfile()
	}
	raw, err := os.ReadFile(*planPath)
	check(err)
	var plan Plan
	check(json.Unmarshal(raw, &plan))
	if plan.Conns <= 0 {
		plan.Conns = 4
	}
	if plan.Target == "history" {
		encoded, err := json.Marshal(runHistory(*plan.History, plan.Conns, dialCredentials(plan)))
		check(err)
		check(os.WriteFile(*outPath, encoded, 0o644))
		return
	}
	var target transport
	switch plan.Target {
	case "", "chat":
		target = newChat(plan.Conns, plan.Receipts, dialCredentials(plan))
	case "peer":
		target = newPeer(plan.PeerAddr)
	default:
		check(fmt.Errorf("unknown target %q", plan.Target))
	}
	result := run(plan, target)
	target.close()
	encoded, err := json.Marshal(result)
	check(err)
	check(os.WriteFile(*outPath, encoded, 0o644))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(plan Plan, target transport) Result {
	started := time.Now()
	since := func() float64 { return time.Since(started).Seconds() }
	var caughtUp sync.WaitGroup
	caughtUp.Add(len(plan.Members))
	streamsCtx, stopStreams := context.WithCancel(context.Background())
	receipts := make([][]receipt, len(plan.Members))
	var holders sync.WaitGroup
	for index, member := range plan.Members {
		holders.Add(1)
		go func() {
			defer holders.Done()
			var once sync.Once
			receipts[index] = target.hold(streamsCtx, member, since, func() { once.Do(caughtUp.Done) })
		}()
	}
	caughtUp.Wait()

	total := int(plan.Rate * plan.Duration)
	sends := make([]sent, total)
	acked := make([]bool, total)
	var errMu sync.Mutex
	errors := map[string]int{}
	var inFlight atomic.Int64
	overloaded := 0
	text := prose(plan.BodyBytes)
	var senders sync.WaitGroup
	tick := time.Duration(plan.TickMs * float64(time.Millisecond))
	start := time.Now().Add(500 * time.Millisecond)
	startOffset := start.Sub(started).Seconds()
	for i := range total {
		due := start.Add(time.Duration(float64(i) / plan.Rate * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			time.Sleep(max(wait, tick))
		}
		if inFlight.Load() >= int64(plan.MaxInFlight) {
			overloaded++
			continue
		}
		inFlight.Add(1)
		senders.Add(1)
		route := plan.Routes[i%len(plan.Routes)]
		dueAt := startOffset + float64(i)/plan.Rate
		go func() {
			defer senders.Done()
			defer inFlight.Add(-1)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmid := fmt.Sprintf("%s-%d", plan.Run, i)
			id, code := target.send(ctx, plan.Members[route.Sender], route, cmid, text)
			if code != "" {
				errMu.Lock()
				errors[code]++
				errMu.Unlock()
				return
			}
			// Latency runs from the due time: a stalled generator counts against the system.
			sends[i] = sent{due: dueAt, acked: since(), id: id}
			acked[i] = true
		}()
	}
	sendEnd := time.Now()
	senders.Wait()
	time.Sleep(time.Duration(plan.Drain * float64(time.Second)))
	stopStreams()
	holders.Wait()

	result := Result{
		Sends:           map[string][]any{},
		Errors:          errors,
		Overloaded:      overloaded,
		Resumes:         target.resumes(),
		Redirects:       target.redirects(),
		SendStartUnixNs: start.UnixNano(),
		SendEndUnixNs:   sendEnd.UnixNano(),
	}
	if c, ok := target.(*chat); ok {
		result.Marks, result.Typing = int(c.marked.Load()), int(c.typed.Load())
	}
	for i := range total {
		if !acked[i] {
			continue
		}
		route := plan.Routes[i%len(plan.Routes)]
		recipients := make([]uint64, len(route.Recipients))
		for k, r := range route.Recipients {
			recipients[k] = plan.Members[r].UserID
		}
		result.Sends[fmt.Sprintf("%s-%d", plan.Run, i)] = []any{
			sends[i].due, sends[i].acked, sends[i].id, recipients, route.ChatID,
		}
	}
	for _, list := range receipts {
		for _, r := range list {
			result.Received = append(result.Received, [3]any{r.cmid, r.user, r.at})
		}
	}
	return result
}

// prose is n bytes of words and spaces: the history writer indexes each message's words for
// search, so a body of words costs what people's text costs, where one long run of a letter
// would be a single word.
func prose(n int) string {
	words := []string{
		"the", "meeting", "moved", "to", "thursday", "afternoon", "bring", "your", "notes",
		"and", "coffee", "we", "will", "review", "last", "week's", "numbers", "before", "lunch",
		"see", "you", "there", "unless", "traffic", "is", "bad", "again", "today",
	}
	var text []byte
	for i := 0; len(text) < n; i++ {
		if len(text) > 0 {
			text = append(text, ' ')
		}
		text = append(text, words[i%len(words)]...)
	}
	return string(text[:n])
}
