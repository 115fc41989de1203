package review

import "time"

// numBuckets is how many time buckets each destination keeps for the
// chart: a fixed size, so memory does not grow with the period or the
// number of lines.
const numBuckets = 64

// minBucket is the narrowest bucket: one minute.
const minBucket = 60

// buckets counts one destination's lines per time bucket of the shared
// timeline.
type buckets [numBuckets]uint32

// timeline maps times to buckets. All destinations share it: when a time
// falls outside the covered span, the bucket width doubles (and the origin
// moves back) until it fits, and every destination's buckets are merged in
// pairs the same way. Origins are multiples of the width counted from the
// Unix epoch, so that merged buckets line up exactly.
type timeline struct {
	origin int64 // Unix seconds of bucket 0's start; a multiple of width
	width  int64 // seconds per bucket; 0 until the first time is seen
}

// Origin and Width describe the timeline for the report.
func (tl *timeline) Origin() time.Time { return time.Unix(tl.origin, 0).UTC() }

// covers reports whether Unix second s falls in the covered span.
func (tl *timeline) covers(s int64) bool {
	return tl.width > 0 && s >= tl.origin && s < tl.origin+numBuckets*tl.width
}

// index returns the bucket of Unix second s, which must be covered.
func (tl *timeline) index(s int64) int { return int((s - tl.origin) / tl.width) }

// grow widens the timeline to cover s and returns a function that
// remaps a destination's buckets to the new layout (nil when the layout
// did not change, which is the case for the first time seen).
func (tl *timeline) grow(s int64) func(*buckets) {
	if tl.width == 0 {
		tl.width, tl.origin = minBucket, floorTo(s, minBucket)
		return nil
	}
	oldOrigin, oldWidth := tl.origin, tl.width
	end := max(s+1, oldOrigin+numBuckets*oldWidth)
	start := min(s, oldOrigin)
	width := oldWidth
	for {
		width *= 2
		origin := floorTo(start, width)
		if end <= origin+numBuckets*width {
			tl.origin, tl.width = origin, width
			break
		}
	}
	return func(b *buckets) {
		var merged buckets
		for i, n := range b {
			if n > 0 {
				merged[(oldOrigin+int64(i)*oldWidth-tl.origin)/tl.width] += n
			}
		}
		*b = merged
	}
}

// floorTo rounds s down to a multiple of step (also for negative s).
func floorTo(s, step int64) int64 {
	q := s / step
	if s%step < 0 {
		q--
	}
	return q * step
}
