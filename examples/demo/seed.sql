-- Sample data for `make demo`: a shop with customers (names, emails, payment
-- cards — all fake, the cards are public test numbers) and their orders.
CREATE TABLE customers (
    id          serial PRIMARY KEY,
    name        text NOT NULL,
    email       text NOT NULL UNIQUE,
    card_number text,
    country     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    id          serial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customers(id),
    item        text NOT NULL,
    amount      numeric(10,2) NOT NULL,
    status      text NOT NULL DEFAULT 'paid',
    notes       text,
    ordered_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO customers (name, email, card_number, country) VALUES
    ('Ada Lovelace',     'ada@example.com',      '4111 1111 1111 1111', 'GB'),
    ('Grace Hopper',     'grace@example.org',    '5555-5555-5555-4444', 'US'),
    ('Alan Turing',      'alan.turing@example.net', '378282246310005',  'GB'),
    ('Katherine Johnson','kj@example.com',       '6011111111111117',    'US'),
    ('Edsger Dijkstra',  'edsger@example.nl',    '4012888888881881',    'NL'),
    ('Barbara Liskov',   'liskov@example.edu',   '5105105105105100',    'US');

INSERT INTO orders (customer_id, item, amount, status, notes) VALUES
    (1, 'Difference engine parts', 1843.00, 'paid',     NULL),
    (2, 'COBOL manual',              42.50, 'shipped',  'customer asked to email receipts to grace@example.org'),
    (3, 'Enigma rotor set',         315.00, 'paid',     NULL),
    (4, 'Slide rule',                19.99, 'refunded', 'refund to card 6011111111111117'),
    (5, 'Semaphore kit',             64.00, 'paid',     NULL),
    (6, 'CLU compiler',             128.00, 'shipped',  NULL),
    (1, 'Punched cards (box)',       12.00, 'paid',     NULL);

-- The roles airlock's grants hand out. Minted roles are members of these;
-- nobody logs in as them directly.
CREATE ROLE shop_reader NOLOGIN;
GRANT USAGE ON SCHEMA public TO shop_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO shop_reader;

CREATE ROLE shop_writer NOLOGIN IN ROLE shop_reader;
GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO shop_writer;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO shop_writer;
