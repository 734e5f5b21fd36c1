-- $1 notification channel, $2 payload. The wake-up listener's self-test: does it hear this?
SELECT pg_notify($1, $2)
