-- The statements of coreBOS's updates that change the tables the import reads, in the order coreBOS's
-- updater (modules/cbupdater/cbupdater.xml) applies them; a test database of the "current" shape has them
-- applied, one of the "old" shape (DatabaseSchema.xml as it is) has not.  See README.md for each source.

-- name: lead_email_opt_out
-- build/changeSets/addLeadEmailOptOutAndConversionRelatedFields.php (2016-09-02): Vtiger_Field::addField
-- runs vtlib/Vtiger/Utils.php AddColumn ('ALTER TABLE ' . $tablename . " ADD COLUMN $columnname $criteria"),
-- then the changeset's own UPDATE; the field's row is the one a just-installed coreBOS holds.
ALTER TABLE vtiger_leaddetails ADD COLUMN emailoptout VARCHAR(3);
UPDATE vtiger_leaddetails SET emailoptout=0 WHERE emailoptout IS NULL;
vtiger_field (7,735,'emailoptout','vtiger_leaddetails',1,'56','emailoptout','Email Opt Out',1,2,'',100,24,13,1,'C~O',0,7,'BAS',1,'');

-- name: converted_from_lead
-- The same changeset's massCreateFields: isconvertedfromlead varchar(3), convertedfromlead INT(11) on
-- the Accounts and Contacts tables (AddColumn as above).
ALTER TABLE vtiger_account ADD COLUMN isconvertedfromlead varchar(3);
ALTER TABLE vtiger_account ADD COLUMN convertedfromlead INT(11);
ALTER TABLE vtiger_contactdetails ADD COLUMN isconvertedfromlead varchar(3);
ALTER TABLE vtiger_contactdetails ADD COLUMN convertedfromlead INT(11);

-- name: access_time
-- build/changeSets/mysqlstrictNO_ZERO_IN_DATE.php (2016-09-18), run with sql_mode ''.
ALTER TABLE `vtiger_email_access` CHANGE `accesstime` `accesstime` TIME NULL DEFAULT NULL;

-- name: denormalize
-- include/integrations/denormalize/denormalizechangeset.php (2020-07-26; modules/cbupdater/cbupdates/ydenormalize.xml).
ALTER TABLE vtiger_entityname ADD isdenormalized VARCHAR(3) DEFAULT 0;
ALTER TABLE vtiger_entityname ADD denormtable VARCHAR(100) DEFAULT "vtiger_crmentity";
