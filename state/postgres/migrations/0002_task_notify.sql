-- Wake idle workers at once when a task becomes claimable: a new or requeued task, or a
-- finished one whose deployment's next task may now run.
CREATE FUNCTION bosun_notify_tasks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IN ('queued', 'done', 'error', 'cancelled', 'timeout') THEN
        PERFORM pg_notify('bosun_tasks', NEW.id::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_notify AFTER INSERT OR UPDATE OF state ON tasks
    FOR EACH ROW EXECUTE FUNCTION bosun_notify_tasks();
