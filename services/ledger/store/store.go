// Package store is the ledger service's double-entry book in its tenant database. Every
// transaction is a set of signed entries that sum to zero per currency; balances change only
// through entries; a customer account is never overdrawn; and a transaction's reference is
// unique, so posting the same business event twice returns the first posting instead of
// moving money again. The database enforces each rule too (see migration 0002 of the tenant's database, migrations/<database>/).
package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/ztbank/ztbank/libs/db"
	"github.com/ztbank/ztbank/libs/money"
	"github.com/ztbank/ztbank/libs/textfield"
)

var (
	// ErrNotFound is returned for an unknown account or transaction.
	ErrNotFound = errors.New("not found")
	// ErrInsufficientFunds is returned when a posting would overdraw a customer account.
	ErrInsufficientFunds = errors.New("insufficient funds")
	// ErrCurrencyMismatch is returned when an entry's currency is not its account's.
	ErrCurrencyMismatch = errors.New("currency mismatch")
	// ErrInvalid is returned for a transaction that breaks a ledger rule before it reaches
	// the database: unbalanced, too few or too many entries, repeated accounts, bad sizes.
	ErrInvalid = errors.New("invalid ledger transaction")
	// ErrReferenceConflict is returned when a reference was already posted with different
	// entries.
	ErrReferenceConflict = errors.New("reference already posted with different entries")
)

// Bounds on what one transaction may contain.
const (
	MaxEntries        = 16
	MaxReferenceLen   = 200
	MaxDescriptionLen = 200
	MaxPageSize       = 500
)

// Account kinds.
const (
	KindCustomer = "customer"
	KindSystem   = "system"
)

// Account is a ledger account and its balance.
type Account struct {
	ID        uuid.UUID
	OwnerID   uuid.UUID // uuid.Nil for system accounts
	Kind      string
	Name      string
	Balance   money.Money
	CreatedAt time.Time
}

// Entry is one signed movement on one account: positive credits it, negative debits it.
type Entry struct {
	ID            int64
	TransactionID uuid.UUID
	AccountID     uuid.UUID
	Amount        money.Money
	CreatedAt     time.Time
}

// Posting is one line of a transaction to be posted.
type Posting struct {
	AccountID uuid.UUID
	Amount    int64 // signed minor units of the transaction's currency
}

// Transaction is a balanced set of postings in one currency.
type Transaction struct {
	ID          uuid.UUID
	Reference   string
	Description string
	Currency    money.Currency
	Postings    []Posting // sorted by account ID once posted
	CreatedAt   time.Time
	// Replayed is true when Post found the reference already posted and returned it.
	Replayed bool
}

// Store reads and writes the ledger schema as ledger_svc.
type Store struct {
	db   poolLike
	opts []db.Option
}

// poolLike is what the store needs from *pgxpool.Pool.
type poolLike interface {
	db.Beginner
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// New returns a Store over pool (a *pgxpool.Pool logged in as ledger_svc). opts tune the
// retrying transactions (libs/db).
func New(pool poolLike, opts ...db.Option) *Store {
	return &Store{db: pool, opts: opts}
}

func (s *Store) pool() poolLike { return s.db }

// Validate checks t against the ledger rules that need no database.
func (t Transaction) Validate() error {
	// Lengths in characters, as the tables' CHECKs count them; the description carries a
	// customer's payment reference, so it passes the same text rules as where it was typed.
	if t.Reference == "" {
		return fmt.Errorf("%w: reference is required", ErrInvalid)
	}
	if err := textfield.Check(t.Reference, MaxReferenceLen); err != nil {
		return fmt.Errorf("%w: reference: %w", ErrInvalid, err)
	}
	if err := textfield.Check(t.Description, MaxDescriptionLen); err != nil {
		return fmt.Errorf("%w: description: %w", ErrInvalid, err)
	}
	if _, err := money.ParseCurrency(string(t.Currency)); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(t.Postings) < 2 || len(t.Postings) > MaxEntries {
		return fmt.Errorf("%w: %d entries, want 2 to %d", ErrInvalid, len(t.Postings), MaxEntries)
	}
	seen := map[uuid.UUID]bool{}
	var sum int64
	for _, p := range t.Postings {
		if p.Amount == 0 || p.Amount > money.MaxAmount || p.Amount < -money.MaxAmount {
			return fmt.Errorf("%w: entry amount %d out of range", ErrInvalid, p.Amount)
		}
		// A missing account_id decodes as the nil UUID; it names no account (FuzzDecodePosting).
		if p.AccountID == uuid.Nil {
			return fmt.Errorf("%w: an entry names no account", ErrInvalid)
		}
		if seen[p.AccountID] {
			return fmt.Errorf("%w: account %s appears twice", ErrInvalid, p.AccountID)
		}
		seen[p.AccountID] = true
		sum += p.Amount // at most 16 × 1e15: no overflow
	}
	if sum != 0 {
		return fmt.Errorf("%w: entries sum to %d, want 0", ErrInvalid, sum)
	}
	return nil
}

// Transfer posts amount from one account to another under reference.
func (s *Store) Transfer(ctx context.Context, reference string, from, to uuid.UUID, amount money.Money, description string) (Transaction, error) {
	if err := amount.Positive(); err != nil {
		return Transaction{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return s.Post(ctx, Transaction{
		Reference:   reference,
		Description: description,
		Currency:    amount.Currency,
		Postings:    []Posting{{AccountID: from, Amount: -amount.Amount}, {AccountID: to, Amount: amount.Amount}},
	})
}

// Post records t atomically, or, when its reference was posted before, returns that posting
// with Replayed set (ErrReferenceConflict if its entries differ). It runs SERIALIZABLE: two
// postings that read the same balance and both debit it cannot both commit, so the
// overdraft check needs no row locks (which ledger_svc, having no UPDATE grant, could not
// take anyway). Entries are written in account-ID order, so the balance updates their
// trigger makes take row locks in one global order and rarely deadlock.
func (s *Store) Post(ctx context.Context, t Transaction) (Transaction, error) {
	if err := t.Validate(); err != nil {
		return Transaction{}, err
	}
	t.Postings = slices.Clone(t.Postings)
	slices.SortFunc(t.Postings, func(a, b Posting) int { return slices.Compare(a.AccountID[:], b.AccountID[:]) })
	var out Transaction
	err := db.Transact(ctx, s.pool(), func(tx pgx.Tx) error {
		prev, err := transactionByReference(ctx, tx, t.Reference)
		if err == nil {
			if prev.Currency != t.Currency || !slices.Equal(prev.Postings, t.Postings) {
				return fmt.Errorf("reference %q: %w", t.Reference, ErrReferenceConflict)
			}
			prev.Replayed = true
			out = prev
			return nil
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		ids := make([]uuid.UUID, len(t.Postings))
		amounts := make([]int64, len(t.Postings))
		for i, p := range t.Postings {
			ids[i], amounts[i] = p.AccountID, p.Amount
		}
		rows, err := tx.Query(ctx, `SELECT id, kind, currency, balance FROM ledger.accounts
			WHERE id = ANY($1) ORDER BY id`, ids)
		if err != nil {
			return fmt.Errorf("read accounts: %w", err)
		}
		type balance struct {
			ID       uuid.UUID
			Kind     string
			Currency string
			Balance  int64
		}
		accts, err := pgx.CollectRows(rows, pgx.RowToStructByPos[balance])
		if err != nil {
			return fmt.Errorf("read accounts: %w", err)
		}
		byID := make(map[uuid.UUID]balance, len(accts))
		for _, a := range accts {
			byID[a.ID] = a
		}
		// Debited accounts are checked first, credited ones after: the payer can see the
		// accounts it debits, not the ones it credits, so a refusal about the payer's own
		// account (insufficient funds) must never depend on whether the account credited
		// exists or which currency it holds (an account-ID oracle otherwise).
		for _, debits := range []bool{true, false} {
			for _, p := range t.Postings {
				if (p.Amount < 0) != debits {
					continue
				}
				a, ok := byID[p.AccountID]
				switch {
				case !ok:
					return fmt.Errorf("account %s: %w", p.AccountID, ErrNotFound)
				case a.Currency != string(t.Currency):
					return fmt.Errorf("account %s is %s, entry is %s: %w", a.ID, a.Currency, t.Currency, ErrCurrencyMismatch)
				case a.Kind == KindCustomer && a.Balance+p.Amount < 0:
					return fmt.Errorf("account %s: %w", a.ID, ErrInsufficientFunds)
				}
			}
		}
		out = t
		out.ID = uuid.New()
		if err := tx.QueryRow(ctx, `INSERT INTO ledger.transactions (id, reference, description)
			VALUES ($1, $2, $3) RETURNING created_at`, out.ID, t.Reference, t.Description).Scan(&out.CreatedAt); err != nil {
			return fmt.Errorf("insert transaction: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO ledger.entries (transaction_id, account_id, currency, amount)
			SELECT $1, a, $2, n FROM unnest($3::uuid[], $4::bigint[]) WITH ORDINALITY AS e(a, n, i) ORDER BY i`,
			out.ID, string(t.Currency), ids, amounts); err != nil {
			return fmt.Errorf("insert entries: %w", err)
		}
		return nil
	}, s.opts...)
	if err != nil {
		// The database's own checks back up the ones above; report them the same way.
		if db.Constraint(err) == "accounts_not_overdrawn" {
			return Transaction{}, fmt.Errorf("post %q: %w", t.Reference, ErrInsufficientFunds)
		}
		return Transaction{}, fmt.Errorf("post %q: %w", t.Reference, err)
	}
	return out, nil
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func transactionByReference(ctx context.Context, q querier, reference string) (Transaction, error) {
	rows, err := q.Query(ctx, `SELECT t.id, t.reference, t.description, t.created_at, e.currency, e.account_id, e.amount
		FROM ledger.transactions t JOIN ledger.entries e ON e.transaction_id = t.id
		WHERE t.reference = $1 ORDER BY e.account_id`, reference)
	if err != nil {
		return Transaction{}, fmt.Errorf("look up reference: %w", err)
	}
	var t Transaction
	var cur string
	var p Posting
	_, err = pgx.ForEachRow(rows, []any{&t.ID, &t.Reference, &t.Description, &t.CreatedAt, &cur, &p.AccountID, &p.Amount}, func() error {
		t.Currency = money.Currency(cur)
		t.Postings = append(t.Postings, p)
		return nil
	})
	if err != nil {
		return Transaction{}, fmt.Errorf("look up reference: %w", err)
	}
	if t.ID == uuid.Nil {
		return Transaction{}, ErrNotFound
	}
	return t, nil
}

// TransactionByReference returns the posting recorded under reference.
func (s *Store) TransactionByReference(ctx context.Context, reference string) (Transaction, error) {
	return transactionByReference(ctx, s.pool(), reference)
}

// OpenAccount creates a customer account with a zero balance.
func (s *Store) OpenAccount(ctx context.Context, id, owner uuid.UUID, name string, currency money.Currency) (Account, error) {
	a := Account{ID: id, OwnerID: owner, Kind: KindCustomer, Name: name, Balance: money.Money{Currency: currency}}
	if _, err := money.ParseCurrency(string(currency)); err != nil {
		return Account{}, fmt.Errorf("open account: %w: %w", ErrInvalid, err)
	}
	err := s.pool().QueryRow(ctx, `INSERT INTO ledger.accounts (id, owner_id, name, currency)
		VALUES ($1, $2, $3, $4) RETURNING created_at`, id, owner, name, string(currency)).Scan(&a.CreatedAt)
	if err != nil {
		return Account{}, fmt.Errorf("open account: %w", err)
	}
	return a, nil
}

// Account returns the account with its current balance.
func (s *Store) Account(ctx context.Context, id uuid.UUID) (Account, error) {
	var a Account
	var owner *uuid.UUID
	var cur string
	err := s.pool().QueryRow(ctx, `SELECT id, owner_id, kind, name, currency, balance, created_at
		FROM ledger.accounts WHERE id = $1`, id).Scan(&a.ID, &owner, &a.Kind, &a.Name, &cur, &a.Balance.Amount, &a.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Account{}, fmt.Errorf("account %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Account{}, fmt.Errorf("account %s: %w", id, err)
	}
	if owner != nil {
		a.OwnerID = *owner
	}
	a.Balance.Currency = money.Currency(cur)
	return a, nil
}

// Entries returns up to limit entries of an account with IDs above after, oldest first, and
// the cursor for the next page (0 when there is none). Keyset paging keeps every page a
// cheap index range scan however long the history.
func (s *Store) Entries(ctx context.Context, account uuid.UUID, after int64, limit int) ([]Entry, int64, error) {
	if limit <= 0 || limit > MaxPageSize {
		return nil, 0, fmt.Errorf("%w: page size %d, want 1 to %d", ErrInvalid, limit, MaxPageSize)
	}
	rows, err := s.pool().Query(ctx, `SELECT id, transaction_id, account_id, amount, currency, created_at
		FROM ledger.entries WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3`, account, after, limit+1)
	if err != nil {
		return nil, 0, fmt.Errorf("entries: %w", err)
	}
	var out []Entry
	var e Entry
	var cur string
	_, err = pgx.ForEachRow(rows, []any{&e.ID, &e.TransactionID, &e.AccountID, &e.Amount.Amount, &cur, &e.CreatedAt}, func() error {
		e.Amount.Currency = money.Currency(cur)
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("entries: %w", err)
	}
	var next int64
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}

// AccountsByOwner returns up to limit of owner's customer accounts with their balances,
// oldest first. It serves "my accounts", so it never returns system accounts.
func (s *Store) AccountsByOwner(ctx context.Context, owner uuid.UUID, limit int) ([]Account, error) {
	if limit <= 0 || limit > MaxPageSize {
		return nil, fmt.Errorf("%w: page size %d, want 1 to %d", ErrInvalid, limit, MaxPageSize)
	}
	rows, err := s.pool().Query(ctx, `SELECT id, kind, name, currency, balance, created_at
		FROM ledger.accounts WHERE owner_id = $1 AND kind = 'customer' ORDER BY created_at, id LIMIT $2`, owner, limit)
	if err != nil {
		return nil, fmt.Errorf("accounts of %s: %w", owner, err)
	}
	var out []Account
	var a Account
	var cur string
	_, err = pgx.ForEachRow(rows, []any{&a.ID, &a.Kind, &a.Name, &cur, &a.Balance.Amount, &a.CreatedAt}, func() error {
		a.OwnerID, a.Balance.Currency = owner, money.Currency(cur)
		out = append(out, a)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("accounts of %s: %w", owner, err)
	}
	return out, nil
}
