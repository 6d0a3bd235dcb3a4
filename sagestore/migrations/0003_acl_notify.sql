-- Every change to a bucket or its grants tells the app instances (LISTEN sagestore_acl) which
-- bucket to drop from their ACL caches; the notification is sent when the transaction commits.
CREATE FUNCTION sagestore_acl_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'buckets' THEN
        PERFORM pg_notify('sagestore_acl', COALESCE(NEW.id, OLD.id)::text);
    ELSE
        PERFORM pg_notify('sagestore_acl', COALESCE(NEW.bucket_id, OLD.bucket_id)::text);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER buckets_acl_notify AFTER INSERT OR UPDATE OR DELETE ON buckets
    FOR EACH ROW EXECUTE FUNCTION sagestore_acl_notify();
CREATE TRIGGER grants_acl_notify AFTER INSERT OR UPDATE OR DELETE ON grants
    FOR EACH ROW EXECUTE FUNCTION sagestore_acl_notify();
