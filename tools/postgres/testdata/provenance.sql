-- What the provenance tests trace, on top of the demo's shop
-- (examples/demo/seed.sql): the paths a protected value (customers.email,
-- customers.card_number under the pii profile) could take into a result.

-- A view that renames a protected column, one that mixes it into an
-- expression, and a view over that view.
CREATE VIEW contacts AS
    SELECT id, email AS mail, upper(name) AS shout, name || ' <' || email || '>' AS label FROM customers;
CREATE VIEW contact_mail AS SELECT mail AS m, shout FROM contacts;

-- A protected column after a dropped one (alias lists map onto the
-- columns that exist, in attnum order), and a generated column computed
-- from it.
CREATE TABLE accounts (id int, junk text, email text, note text);
ALTER TABLE accounts DROP COLUMN junk;
ALTER TABLE accounts ADD COLUMN shout text GENERATED ALWAYS AS (upper(email)) STORED;
INSERT INTO accounts VALUES (1, 'acct@example.com', 'plain note');

-- A function that is not built in: what it reads is not known.
CREATE FUNCTION peek(int) RETURNS text LANGUAGE sql STABLE
    AS 'SELECT email FROM public.customers WHERE id = $1';

-- A trigger that puts a protected value into the row a write returns.
CREATE TABLE tickets (id int, body text);
CREATE FUNCTION tickets_fill() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.body := (SELECT email FROM public.customers WHERE id = NEW.id);
    RETURN NEW;
END $$;
CREATE TRIGGER tickets_fill BEFORE INSERT ON tickets FOR EACH ROW EXECUTE FUNCTION tickets_fill();

-- A schema the writer owns: a view it may replace, and a table named like
-- one in public.
CREATE SCHEMA scratch AUTHORIZATION shop_writer;
CREATE VIEW scratch.board AS SELECT id, name AS x FROM public.customers;
ALTER VIEW scratch.board OWNER TO shop_writer;
CREATE TABLE scratch.customers (id int, email text);
ALTER TABLE scratch.customers OWNER TO shop_writer;

-- A table the reading role owns, so it can read the extended statistics
-- (pg_stats_ext, pg_stats_ext_exprs) of its protected column.
CREATE TABLE leads (email text, country text);
INSERT INTO leads SELECT email, country FROM customers, generate_series(1, 20);
ALTER TABLE leads OWNER TO shop_reader;
CREATE STATISTICS leads_mcv (mcv) ON email, country FROM leads;
CREATE STATISTICS leads_expr ON (lower(email)) FROM leads;

GRANT SELECT ON contacts, contact_mail, accounts TO shop_reader;
GRANT SELECT, INSERT ON tickets TO shop_writer;
GRANT EXECUTE ON FUNCTION peek(int) TO shop_reader;
-- As an operator might: let the reading role see the raw statistics.
GRANT SELECT ON pg_catalog.pg_statistic TO shop_reader;
ANALYZE;

-- A function on the customers row type: c.contact_of and (c).contact_of
-- call it (a "computed field"), since customers has no such column.
CREATE FUNCTION contact_of(customers) RETURNS text LANGUAGE sql STABLE
    AS 'SELECT $1.email';
