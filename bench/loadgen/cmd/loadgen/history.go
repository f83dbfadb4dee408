package main

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"chatbench/chatv1"
)

// HistoryPlan asks for history pages at a fixed rate instead of sending messages.
type HistoryPlan struct {
	Address string  `json:"address"`
	Token   string  `json:"token"`
	ChatID  string  `json:"chat_id"`
	Limit   int32   `json:"limit"`
	Rate    float64 `json:"rate"`
	// Seconds.
	Duration float64 `json:"duration"`
}

// HistoryResult holds each page's latency in milliseconds, from its due time.
type HistoryResult struct {
	PageMs []float64      `json:"page_ms"`
	Errors map[string]int `json:"errors"`
	// Pages that came back with fewer messages than asked for.
	ShortPages      int   `json:"short_pages"`
	SendStartUnixNs int64 `json:"send_start_unix_ns"`
	SendEndUnixNs   int64 `json:"send_end_unix_ns"`
}

func runHistory(plan HistoryPlan, conns int, creds credentials.TransportCredentials) HistoryResult {
	pool := newPool(conns, creds)
	defer pool.close()
	client := func() chatv1.HistoryServiceClient {
		return chatv1.NewHistoryServiceClient(pool.conn(plan.Address))
	}
	request := &chatv1.GetHistoryRequest{ChatId: plan.ChatID, Limit: plan.Limit}
	// One warm-up call opens the connections before the clock starts.
	warm, cancel := context.WithTimeout(auth(context.Background(), plan.Token), 10*time.Second)
	_, _ = client().GetHistory(warm, request)
	cancel()

	total := int(plan.Rate * plan.Duration)
	latencies := make([]float64, total)
	done := make([]bool, total)
	var mu sync.Mutex
	result := HistoryResult{Errors: map[string]int{}}
	var wg sync.WaitGroup
	start := time.Now().Add(200 * time.Millisecond)
	for i := range total {
		due := start.Add(time.Duration(float64(i) / plan.Rate * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(auth(context.Background(), plan.Token), 10*time.Second)
			defer cancel()
			reply, err := client().GetHistory(ctx, request)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				result.Errors[status.Code(err).String()]++
				return
			}
			if int32(len(reply.Messages)) < plan.Limit {
				result.ShortPages++
			}
			latencies[i] = float64(time.Since(due).Microseconds()) / 1000
			done[i] = true
		}()
	}
	end := time.Now()
	wg.Wait()
	for i, ok := range done {
		if ok {
			result.PageMs = append(result.PageMs, latencies[i])
		}
	}
	result.SendStartUnixNs = start.UnixNano()
	result.SendEndUnixNs = end.UnixNano()
	return result
}
