-- S3 names of SAGE buckets: a bucket made by the S3 door's CreateBucket is addressable by its name
-- (unique on the server) as well as by its UUID.
CREATE TABLE s3_bucket_names (
    name      text PRIMARY KEY,
    bucket_id uuid NOT NULL UNIQUE REFERENCES buckets (id) ON DELETE CASCADE
);

CREATE FUNCTION sagestore_s3_name_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sagestore_s3', 'name:' || COALESCE(NEW.name, OLD.name));
    RETURN NULL;
END $$;

CREATE TRIGGER s3_bucket_names_notify AFTER INSERT OR UPDATE OR DELETE ON s3_bucket_names
    FOR EACH ROW EXECUTE FUNCTION sagestore_s3_name_notify();
