package main

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/centrifugal/protocol"
	"github.com/gorilla/websocket"
)

// peer reaches the centrifuge-based peer server (cmd/peer) over WebSocket with the centrifuge
// protobuf protocol: every member holds a connection subscribed (server-side) to its own
// channel, and a send is an RPC on the sender's connection that the server publishes to each
// recipient's channel, as our server produces one copy per recipient.
type peer struct {
	address string
	mu      sync.Mutex
	conns   map[uint64]*peerConn
	ready   map[uint64]chan struct{}
}

type peerConn struct {
	ws      *websocket.Conn
	writeMu sync.Mutex
	nextID  atomic.Uint32
	mu      sync.Mutex
	waiting map[uint32]chan *protocol.Reply
}

var commandEncoder = protocol.NewProtobufCommandEncoder()

func newPeer(address string) *peer {
	return &peer{address: address, conns: map[uint64]*peerConn{}, ready: map[uint64]chan struct{}{}}
}

func (p *peer) resumes() int   { return 0 }
func (p *peer) redirects() int { return 0 }

func (p *peer) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, conn := range p.conns {
		conn.ws.Close()
	}
}

func (p *peer) readyChan(user uint64) chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	ready, ok := p.ready[user]
	if !ok {
		ready = make(chan struct{})
		p.ready[user] = ready
	}
	return ready
}

func (c *peerConn) write(cmd *protocol.Command) error {
	encoded, err := commandEncoder.Encode(cmd)
	if err != nil {
		return err
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	return c.ws.WriteMessage(websocket.BinaryMessage, encoded)
}

func (c *peerConn) call(cmd *protocol.Command) (*protocol.Reply, error) {
	cmd.Id = c.nextID.Add(1)
	answer := make(chan *protocol.Reply, 1)
	c.mu.Lock()
	c.waiting[cmd.Id] = answer
	c.mu.Unlock()
	if err := c.write(cmd); err != nil {
		return nil, err
	}
	reply := <-answer
	if reply == nil {
		return nil, fmt.Errorf("connection closed")
	}
	if reply.Error != nil {
		return nil, fmt.Errorf("%d %s", reply.Error.Code, reply.Error.Message)
	}
	return reply, nil
}

func (p *peer) hold(ctx context.Context, member Member, since func() float64, caughtUp func()) []receipt {
	target := url.URL{Scheme: "ws", Host: p.address, Path: "/connection/websocket", RawQuery: "cf_protocol=protobuf"}
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, target.String(), nil)
	check(err)
	conn := &peerConn{ws: ws, waiting: map[uint32]chan *protocol.Reply{}}
	var got []receipt
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			_, frame, err := ws.ReadMessage()
			if err != nil {
				conn.mu.Lock()
				for id, answer := range conn.waiting {
					close(answer)
					delete(conn.waiting, id)
				}
				conn.mu.Unlock()
				return
			}
			decoder := protocol.NewProtobufReplyDecoder(frame)
			for {
				reply, err := decoder.Decode()
				if reply != nil {
					switch {
					case reply.Id > 0:
						conn.mu.Lock()
						answer := conn.waiting[reply.Id]
						delete(conn.waiting, reply.Id)
						conn.mu.Unlock()
						if answer != nil {
							answer <- reply
						}
					case reply.Push != nil && reply.Push.Pub != nil:
						data := reply.Push.Pub.Data
						for k, b := range data {
							if b == '\n' {
								data = data[:k]
								break
							}
						}
						got = append(got, receipt{string(data), member.UserID, since()})
					case reply.Push == nil:
						// A server ping: answer with an empty command (pong).
						_ = conn.write(&protocol.Command{})
					}
				}
				if err != nil {
					break
				}
			}
		}
	}()
	_, err = conn.call(&protocol.Command{Connect: &protocol.ConnectRequest{Token: strconv.FormatUint(member.UserID, 10)}})
	check(err)
	p.mu.Lock()
	p.conns[member.UserID] = conn
	p.mu.Unlock()
	close(p.readyChan(member.UserID))
	caughtUp()
	<-ctx.Done()
	ws.Close()
	<-done
	return got
}

func (p *peer) send(ctx context.Context, sender Member, route Route, cmid, body string) (uint64, string) {
	select {
	case <-p.readyChan(sender.UserID):
	case <-ctx.Done():
		return 0, "DEADLINE_EXCEEDED"
	}
	p.mu.Lock()
	conn := p.conns[sender.UserID]
	p.mu.Unlock()
	// The recipients' ids, then the client message id and the body, newline separated.
	data := []byte(route.ChatID + "\n" + cmid + "\n" + body)
	reply, err := conn.call(&protocol.Command{Rpc: &protocol.RPCRequest{Method: "send", Data: data}})
	if err != nil {
		return 0, "PEER_ERROR"
	}
	id, err := strconv.ParseUint(string(reply.Rpc.Data), 10, 64)
	if err != nil {
		return 0, "PEER_ERROR"
	}
	return id, ""
}
