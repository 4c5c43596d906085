-- Competitors of opsdemo_generate(), loaded by bench/generate into the schema
-- "bench" of its throwaway server (outside the extension, so that they
-- survive the DROP EXTENSION / CREATE EXTENSION before every run).
--
-- Both draw the same kind of row as the generator: a date uniform in
-- [period_start, period_end), an amount in numeric(12,2), a client id in
-- 1..1000, an account number of that client, online/offline, and the
-- operation GUID opsdemo_guid(date), which t1's CHECK requires.

CREATE SCHEMA IF NOT EXISTS bench;

-- Method (b): the seed's row-at-a-time PL/pgSQL loop, one INSERT per row.
CREATE OR REPLACE FUNCTION bench.plpgsql_loop(n bigint,
                                              period_start timestamptz,
                                              period_end timestamptz)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    span  interval := period_end - period_start;
    d     timestamptz;
    amt   numeric(12,2);
    c     integer;
    acc   text;
    typ   text;
BEGIN
    FOR i IN 1..n LOOP
        d   := period_start + random() * span;
        amt := round((random() * 1000)::numeric, 2) + 0.01;
        c   := 1 + floor(random() * 1000)::integer;
        acc := '40817810' || lpad((c * 3 + floor(random() * 3)::integer)::text, 12, '0');
        typ := CASE WHEN random() < 0.7 THEN 'online' ELSE 'offline' END;
        INSERT INTO t1 (date, amount, status, operation_guid, message)
        VALUES (d, amt, 0, opsdemo_guid(d),
                jsonb_build_object('client_id', c,
                                   'account_number', acc,
                                   'operation_type', typ));
    END LOOP;
    RETURN n;
END
$$;

-- Method (c), set-based, is a single INSERT ... SELECT ... FROM
-- generate_series(1, n) with the same expressions; it is a plain statement
-- (not wrapped in a function), so it lives in bench/generate itself.
