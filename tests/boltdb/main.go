// Command boltdb stands in for FileBrowser's database in the backup tests: a real BoltDB file
// (go.etcd.io/bbolt, the library FileBrowser's storm uses) written by a live process, and bbolt's own
// consistency check of a copy.
//
//	boltdb write PATH   commit in bursts (random keys and sizes, so pages are freed and reused) until SIGTERM
//	boltdb check PATH   bbolt's tx.Check on the file, then the commit counter; exit 1 on any error
package main

import (
	"encoding/binary"
	"fmt"
	"math/rand"
	"os"
	"os/signal"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bucket = []byte("items")

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: boltdb write|check PATH")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "write":
		write(os.Args[2])
	case "check":
		check(os.Args[2])
	default:
		os.Exit(2)
	}
}

func write(path string) {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	var n uint64
	for {
		burstEnd := time.Now().Add(2 * time.Second)
		for time.Now().Before(burstEnd) {
			n++
			err := db.Update(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucketIfNotExists(bucket)
				if err != nil {
					return err
				}
				for i := 0; i < 20; i++ {
					value := make([]byte, 200+rand.Intn(4000))
					rand.Read(value)
					if err := b.Put([]byte(fmt.Sprintf("key-%05d", rand.Intn(8000))), value); err != nil {
						return err
					}
				}
				count := make([]byte, 8)
				binary.BigEndian.PutUint64(count, n)
				return b.Put([]byte("commits"), count)
			})
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		select {
		case <-stop:
			db.Close()
			fmt.Println(n)
			return
		case <-time.After(time.Second):
		}
	}
}

func check(path string) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		failed := false
		for problem := range tx.Check() {
			fmt.Fprintln(os.Stderr, problem)
			failed = true
		}
		if failed {
			return fmt.Errorf("check failed")
		}
		b := tx.Bucket(bucket)
		if b == nil {
			return fmt.Errorf("no bucket %s", bucket)
		}
		fmt.Println(binary.BigEndian.Uint64(b.Get([]byte("commits"))))
		return nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
