-- The fenced counter and the log of every admitted operation. A fenced update holds the
-- counter row's lock until commit, so the log's sequence is the order of admission.
CREATE TABLE torture_counter (
    id bigint PRIMARY KEY,
    value bigint NOT NULL,
    fence_token bigint NOT NULL DEFAULT 0
);
INSERT INTO torture_counter (id, value) VALUES (1, 0);
CREATE TABLE torture_log (
    seq bigserial PRIMARY KEY,
    op text NOT NULL,
    worker bigint NOT NULL,
    token bigint NOT NULL
);
