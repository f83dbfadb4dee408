// Command peer is the benchmarks' peer: a chat fan-out server built on
// github.com/centrifugal/centrifuge (the library Centrifugo is built on) with its in-memory
// broker. Each user connection is subscribed server-side to the user's own channel; a send is
// an RPC whose handler publishes the message to every member's channel (the sender's
// included), as our messaging server produces one copy per member. It persists nothing.
package main

import (
	"context"
	"flag"
	"log"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/centrifugal/centrifuge"
)

func main() {
	address := flag.String("addr", "127.0.0.1:7190", "listen address")
	flag.Parse()
	node, err := centrifuge.New(centrifuge.Config{LogLevel: centrifuge.LogLevelError})
	if err != nil {
		log.Fatal(err)
	}
	node.OnConnecting(func(_ context.Context, event centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
		// The token is the user id: the benchmark measures delivery, not authentication.
		return centrifuge.ConnectReply{
			Credentials:   &centrifuge.Credentials{UserID: event.Token},
			Subscriptions: map[string]centrifuge.SubscribeOptions{"user:" + event.Token: {}},
		}, nil
	})
	var ids atomic.Uint64
	node.OnConnect(func(client *centrifuge.Client) {
		client.OnRPC(func(event centrifuge.RPCEvent, reply centrifuge.RPCCallback) {
			// Data: "<chat id>\n<client message id>\n<body>"; a direct chat id names both members.
			chat, rest, _ := strings.Cut(string(event.Data), "\n")
			members := strings.Split(strings.TrimPrefix(chat, "d:"), ":")
			id := ids.Add(1)
			for _, member := range members {
				if _, err := node.Publish("user:"+member, []byte(rest)); err != nil {
					reply(centrifuge.RPCReply{}, centrifuge.ErrorInternal)
					return
				}
			}
			reply(centrifuge.RPCReply{Data: []byte(strconv.FormatUint(id, 10))}, nil)
		})
	})
	if err := node.Run(); err != nil {
		log.Fatal(err)
	}
	http.Handle("/connection/websocket", centrifuge.NewWebsocketHandler(node, centrifuge.WebsocketConfig{
		CheckOrigin: func(*http.Request) bool { return true },
	}))
	log.Printf("peer listening on %s", *address)
	log.Fatal(http.ListenAndServe(*address, nil))
}
