package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"chatbench/chatv1"
)

// chat reaches our messaging servers over gRPC, as a mobile client does.
type chat struct {
	conns               *pool
	resumed, redirected atomic.Int64
	receipts            bool
	marked, typed       atomic.Int64
	typingMu            sync.Mutex
	typedAt             map[string]time.Time
}

// windowBytes is each stream's and connection's flow-control window: far above what one
// event or page needs.
const windowBytes = 1 << 20

func newPool(size int, creds credentials.TransportCredentials) *pool {
	return &pool{conns: map[string][]*grpc.ClientConn{}, next: map[string]int{}, size: size, creds: creds}
}

func newChat(conns int, receipts bool, creds credentials.TransportCredentials) *chat {
	return &chat{conns: newPool(conns, creds), receipts: receipts, typedAt: map[string]time.Time{}}
}

// marks collects, per chat, the newest message id a stream received since the last flush.
type marks struct {
	mu      sync.Mutex
	pending map[string]uint64
}

func (m *marks) note(chatID string, id uint64) {
	m.mu.Lock()
	if id > m.pending[chatID] {
		m.pending[chatID] = id
	}
	m.mu.Unlock()
}

func (m *marks) take() map[string]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	taken := m.pending
	m.pending = map[string]uint64{}
	return taken
}

// markEverySecond sends the member's delivery and read marks once a second until ctx ends.
func (c *chat) markEverySecond(ctx context.Context, member Member, m *marks) {
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		client := c.conns.client(member.Server)
		for chatID, id := range m.take() {
			authed := auth(ctx, member.Token)
			_, err := client.MarkDelivered(authed, &chatv1.MarkDeliveredRequest{ChatId: chatID, MessageId: id})
			if err == nil {
				_, err = client.MarkRead(authed, &chatv1.MarkReadRequest{ChatId: chatID, MessageId: id})
			}
			if err == nil {
				c.marked.Add(2)
			}
		}
	}
}

// typing says the sender is typing in the chat, at most once per 3 s per chat, without
// holding up the send.
func (c *chat) typing(ctx context.Context, sender Member, chatID string) {
	key := fmt.Sprint(sender.UserID, chatID)
	c.typingMu.Lock()
	due := time.Since(c.typedAt[key]) > 3*time.Second
	if due {
		c.typedAt[key] = time.Now()
	}
	c.typingMu.Unlock()
	if !due {
		return
	}
	go func() {
		_, err := c.conns.client(sender.Server).SetTyping(
			auth(ctx, sender.Token), &chatv1.SetTypingRequest{ChatId: chatID},
		)
		if err == nil {
			c.typed.Add(1)
		}
	}()
}

func (c *chat) resumes() int   { return int(c.resumed.Load()) }
func (c *chat) redirects() int { return int(c.redirected.Load()) }
func (c *chat) close()         { c.conns.close() }

func (c *chat) send(ctx context.Context, sender Member, route Route, cmid, body string) (uint64, string) {
	if c.receipts {
		c.typing(ctx, sender, route.ChatID)
	}
	reply, err := c.conns.client(sender.Server).Send(auth(ctx, sender.Token), &chatv1.SendRequest{
		ChatId:          route.ChatID,
		ClientMessageId: cmid,
		Body:            body,
	})
	if err != nil {
		return 0, status.Code(err).String()
	}
	return reply.MessageId, ""
}

// pool hands out client connections per server address, round robin over a few of them, as
// many clients behind a few load balancer connections would look to the server.
type pool struct {
	mu    sync.Mutex
	conns map[string][]*grpc.ClientConn
	next  map[string]int
	size  int
	// TLS verified against the plan's CA, or plaintext (see dialCredentials).
	creds credentials.TransportCredentials
}

func (p *pool) client(address string) chatv1.MessagingServiceClient {
	return chatv1.NewMessagingServiceClient(p.conn(address))
}

func (p *pool) conn(address string) *grpc.ClientConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	conns := p.conns[address]
	if conns == nil {
		for range p.size {
			conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(p.creds),
				// Fixed flow-control windows turn off grpc-go's bandwidth probe, which sends a
				// PING (and reads its answer) after nearly every event a quiet connection
				// receives. That was 14% of the generator's CPU at 500 msg/s, and the servers'
				// CPU did not change measurably without it.
				grpc.WithInitialWindowSize(windowBytes), grpc.WithInitialConnWindowSize(windowBytes))
			check(err)
			conns = append(conns, conn)
		}
		p.conns[address] = conns
	}
	p.next[address]++
	return conns[p.next[address]%len(conns)]
}

func (p *pool) close() {
	for _, conns := range p.conns {
		for _, conn := range conns {
			conn.Close()
		}
	}
}

func auth(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// hold keeps one user's stream open until ctx ends: it resumes from the last cursor after a
// ResumeRequired or a dropped stream and follows redirects, as a mobile client does.
func (c *chat) hold(ctx context.Context, member Member, since func() float64, caughtUp func()) []receipt {
	var got []receipt
	cursor := ""
	server := member.Server
	var seen *marks
	if c.receipts {
		seen = &marks{pending: map[string]uint64{}}
		go c.markEverySecond(ctx, member, seen)
	}
	for ctx.Err() == nil {
		redirect, err := c.subscribe(ctx, member, server, &cursor, &got, since, caughtUp, seen)
		if ctx.Err() != nil {
			break
		}
		switch code := status.Code(err); {
		case redirect != "":
			server = redirect
		case err == io.EOF || code == codes.Unavailable || code == codes.Canceled:
		default:
			// Retrying cannot help (an expired token, say): give up on this stream.
			fmt.Fprintln(os.Stderr, "loadgen: stream of", member.UserID, "ended:", err)
			caughtUp()
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
	return got
}

// subscribe holds one stream until it ends; it returns why, and where to go next if the
// server moved the stream (a Redirect event) or refused it with the owner's address.
func (c *chat) subscribe(
	ctx context.Context, member Member, server string, cursor *string, got *[]receipt,
	since func() float64, caughtUp func(), seen *marks,
) (string, error) {
	stream, err := c.conns.client(server).Subscribe(
		auth(ctx, member.Token), &chatv1.SubscribeRequest{ResumeCursor: *cursor},
	)
	if err != nil {
		return "", err
	}
	for {
		event, err := stream.Recv()
		if err != nil {
			if values := stream.Trailer().Get("chat-redirect"); len(values) > 0 {
				return values[0], err
			}
			return "", err
		}
		if event.Cursor != "" {
			*cursor = event.Cursor
		}
		switch kind := event.Event.(type) {
		case *chatv1.ClientEvent_Message:
			*got = append(*got, receipt{kind.Message.ClientMessageId, member.UserID, since()})
			if seen != nil && kind.Message.SenderId != member.UserID {
				seen.note(kind.Message.ChatId, kind.Message.MessageId)
			}
		case *chatv1.ClientEvent_CaughtUp:
			caughtUp()
		case *chatv1.ClientEvent_ResumeRequired:
			c.resumed.Add(1)
		case *chatv1.ClientEvent_Redirect:
			c.redirected.Add(1)
			return kind.Redirect.Address, io.EOF
		case *chatv1.ClientEvent_ResyncRequired:
			fmt.Fprintln(os.Stderr, "loadgen: resync required for", member.UserID)
		}
	}
}
