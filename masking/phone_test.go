package masking

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// TestPhoneMemo checks the premise of nanpMemo and intlMemo: libphonenumber's
// verdict depends only on the country code, the national length and the first
// 7 national digits. For random prefixes it compares numbers that share a
// memo key; they must all get the same verdict.
func TestPhoneMemo(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	rounds := 400
	if testing.Short() {
		rounds = 50
	}
	ccs := []int{1, 44, 49, 33, 81, 61, 91, 86, 55, 52, 34, 39, 7, 31, 46, 41, 48, 90, 27, 234, 20, 62, 63, 82, 65, 971, 966, 353, 351, 47, 45, 358, 32, 43, 36, 420, 380}
	for _, cc := range ccs {
		region := phonenumbers.GetRegionCodeForCountryCode(cc)
		lengths := map[int]bool{}
		for _, ex := range []*phonenumbers.PhoneNumber{phonenumbers.GetExampleNumber(region), phonenumbers.GetExampleNumberForType(region, phonenumbers.MOBILE)} {
			if ex != nil {
				lengths[len(phonenumbers.GetNationalSignificantNumber(ex))] = true
			}
		}
		for l := range lengths {
			valid := 0
			for range rounds {
				prefix := fmt.Sprint(1 + r.IntN(9))
				for len(prefix) < min(7, l) {
					prefix += fmt.Sprint(r.IntN(10))
				}
				var first bool
				for j := range 5 {
					n := prefix
					for len(n) < l {
						n += fmt.Sprint(r.IntN(10))
					}
					v := libValid(cc, []byte(n))
					if j == 0 {
						first = v
					} else if v != first {
						t.Errorf("+%d: numbers with prefix %s and length %d disagree", cc, prefix, l)
					}
					if v {
						valid++
					}
				}
			}
			if valid == 0 {
				t.Logf("+%d length %d: no valid number drawn (check is vacuous)", cc, l)
			}
		}
	}
	// Deep NANP prefixes from the metadata (305-20x vs 305-209).
	for _, n := range []string{"3052012345", "3052092345", "5056412345", "5056422345"} {
		if got, want := nanpValid(atou([]byte(n))), libValid(1, []byte(n)); got != want {
			t.Errorf("nanpValid(%s) = %v, library says %v", n, got, want)
		}
	}
}

func TestValidPhone(t *testing.T) {
	for n, want := range map[string]bool{
		"4155552671": true, "14155552671": true, "+14155552671": true, "+442079460958": true,
		"+390612345678": true, // Italian leading zero
		"1234567890":    false, "+999123456789": false, "+4412": false,
	} {
		if got := validPhone([]byte(n)); got != want {
			t.Errorf("validPhone(%s) = %v, want %v", n, got, want)
		}
		if got := validPhone([]byte(n)); got != want { // memoized path
			t.Errorf("validPhone(%s) second call = %v, want %v", n, got, want)
		}
	}
}
