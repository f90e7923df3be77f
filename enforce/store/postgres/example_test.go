package postgres_test

import (
	"context"
	"log"
	"time"

	"github.com/moatsec/moat/enforce/store/postgres"
)

// Each replica of a fleet server ticks its sweep; one at a time does it.
func ExampleStore_Singleton() {
	ctx := context.Background()
	s, err := postgres.Open(ctx, "postgres://moat@db.example:5432/moat", postgres.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for range tick.C {
		_, err := s.Singleton(ctx, postgres.JobExpire, func(ctx context.Context) error {
			_, err := s.Expire(ctx, time.Now())
			return err
		})
		if err != nil {
			log.Print(err)
		}
	}
}

// A bouncer stream that is up to date waits for the next change on any
// replica instead of polling.
func ExampleStore_Wait() {
	ctx := context.Background()
	s, err := postgres.Open(ctx, "postgres://moat@db.example:5432/moat", postgres.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	seen, err := s.Seq(ctx)
	if err != nil {
		log.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := s.Wait(wctx, seen); err != nil {
		return // nothing new within the long poll
	}
	// ... s.Stream(ctx, seen, false, time.Now(), 0, emit)
}
