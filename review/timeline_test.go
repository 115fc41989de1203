package review

import (
	"testing"
	"time"
)

// TestTimelineGrows feeds times in and out of order, years apart, and
// checks that every destination's buckets keep every count, each in the
// bucket that covers its time.
func TestTimelineGrows(t *testing.T) {
	times := []time.Duration{0, 30 * time.Second, 2 * time.Hour, -3 * time.Hour, 90 * 24 * time.Hour, -400 * 24 * time.Hour, time.Minute}
	var lines []string
	for i, at := range times {
		host := "a.example.net"
		if i%2 == 1 {
			host = "b.example.net"
		}
		lines = append(lines, deny(at, host, 443, "no-rule", "site"))
	}
	r := reviewLines(t, Filter{}, nil, lines...)
	tl := r.Timeline
	if tl.Origin.Unix()%tl.BucketSeconds != 0 || tl.BucketSeconds%minBucket != 0 {
		t.Fatalf("origin %v width %d: not aligned", tl.Origin, tl.BucketSeconds)
	}
	end := tl.Origin.Add(time.Duration(tl.BucketSeconds*numBuckets) * time.Second)
	for i, at := range times {
		when := t0.Add(at)
		if when.Before(tl.Origin) || !when.Before(end) {
			t.Errorf("time %d (%v) outside the timeline %v..%v", i, when, tl.Origin, end)
		}
	}
	total := 0
	for _, d := range product(t, r, "site").Denied {
		var sum uint32
		for i, n := range d.Timeline {
			sum += n
			bucketStart := tl.Origin.Add(time.Duration(int64(i)*tl.BucketSeconds) * time.Second)
			if n > 0 && (d.Last.Before(bucketStart) || !d.First.Before(bucketStart.Add(time.Duration(tl.BucketSeconds)*time.Second))) {
				t.Errorf("%s: bucket %d (%v) is outside %v..%v", d.Host, i, bucketStart, d.First, d.Last)
			}
		}
		if int(sum) != d.Count {
			t.Errorf("%s: buckets hold %d, count %d", d.Host, sum, d.Count)
		}
		total += d.Count
	}
	if total != len(times) {
		t.Errorf("total %d, want %d", total, len(times))
	}
}

// TestTimelineFirstBucket: one time gives the narrowest bucket, starting
// at the minute.
func TestTimelineFirstBucket(t *testing.T) {
	var tl timeline
	if remap := tl.grow(t0.Unix() + 59); remap != nil || tl.width != minBucket || tl.origin != t0.Unix() || tl.index(t0.Unix()+59) != 0 {
		t.Errorf("timeline %+v", tl)
	}
	if floorTo(-61, 60) != -120 || floorTo(61, 60) != 60 {
		t.Error("floorTo")
	}
}
