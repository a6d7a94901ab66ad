UPDATE users SET a = E'x\'s' /* c */ WHERE id = $1; DO $$ BEGIN DELETE FROM t; END $$;
ALTER TABLE only public."T" ALTER COLUMN c TYPE int;
-- Running upgrade a, b -> c
CREATE INDEX CONCURRENTLY ix ON t (a);
