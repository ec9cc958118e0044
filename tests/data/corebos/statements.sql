-- coreBOS's own statements, verbatim (placeholders '?' as its PearDatabase::pquery takes them; '%s' where
-- ADOdb sprintf's a table name in), that the tests fill a coreBOS database with.  Each is named; the
-- source file is at tsolucio/corebos 9ea375f329ef86fa95310420bcd1e63f7328b886 unless a commit is given.

-- name: sequence_create
-- include/adodb/drivers/adodb-mysqli.inc.php $_genSeqSQL, $_genSeq2SQL (GenID on a first use)
create table if not exists %s (id int not null);
-- name: sequence_start
insert into %s values (%s);
-- name: sequence_next
-- $_genIDSQL: PearDatabase::getUniqueID($seqname) is GenID($seqname.'_seq'), then mysqli_insert_id
update %s set id=LAST_INSERT_ID(id+1);

-- name: entity_create
-- data/CRMEntity.php insertIntoCrmEntity at cda0716f9dd5cc3b89182325c23740cff360dcd2 (the schema's
-- commit; later versions add cbuuid), line 377
insert into vtiger_crmentity (crmid,smcreatorid,smownerid,setype,description,modifiedby,createdtime,modifiedtime) values(?,?,?,?,?,?,?,?);
-- name: entity_table
-- data/CRMEntity.php insertIntoEntityTable (HEAD line 974): each module table's row, its columns named;
-- a uitype 8 field (to_email, cc_email, bcc_email) as json_encode(explode(',', rtrim($value, ',')))
insert into %s(%s) values(%s);
-- name: entity_delete
-- data/CRMEntity.php mark_deleted at cda0716f…, line 941
UPDATE vtiger_crmentity set deleted=1,modifiedtime=?,modifiedby=? where crmid=?;

-- name: email_link
-- modules/Emails/Emails.php save_module ($InsertRelationSQL; users: vtiger_salesmanactivityrel)
insert into vtiger_seactivityrel values(?,?);
-- name: email_user_link
insert into vtiger_salesmanactivityrel values(?,?);

-- name: send_flag
-- modules/Emails/mailsend.php: the owner's email1 as From, SENT
update vtiger_emaildetails set email_flag ="SENT",from_email =? where emailid=?;
-- name: send_custom_from
-- modules/Emails/mailsend.php: another From typed on the form
update vtiger_emaildetails set from_email = concat(from_email,' > ',?) where emailid=?;
-- name: send_date
-- modules/Emails/mailsend.php: the day it was sent ($date_var = date('Ymd'))
update vtiger_activity set date_start =? where activityid = ?;

-- name: access_insert
-- modules/Emails/TrackAccess.php, its four statements (date('Y-m-d'), date('H:i:s'))
INSERT INTO vtiger_email_access(crmid, mailid, accessdate, accesstime) VALUES(?,?,?,?);
-- name: access_count
select count(*) as count from vtiger_email_access where crmid=? and mailid=?;
-- name: access_tracked
select 1 from vtiger_email_track where crmid=? and mailid=?;
-- name: access_update
update vtiger_email_track set access_count=? where crmid=? and mailid=?;
-- name: access_first
insert into vtiger_email_track(crmid,mailid,access_count) values(?,?,?);

-- name: convert_links
-- include/Webservices/Utils.php vtws_transferRelatedActivities (an email's link moves to the record
-- the related records go to: transferRelatedRecordsTo, Contacts by default)
select activityid from vtiger_seactivityrel where crmid=?;
-- name: convert_unlink
delete from vtiger_seactivityrel where crmid=? and activityid=?;
-- name: convert_link
insert into vtiger_seactivityrel(crmid,activityid) values (?,?);
-- name: convert_mark
-- include/Webservices/ConvertLead.php vtws_updateConvertLeadStatus
UPDATE vtiger_leaddetails SET converted = 1 where leadid=?;
-- name: convert_from_lead
-- the same, per Accounts/Contacts ($tablename, $tableIndex: vtiger_account accountid, vtiger_contactdetails contactid)
UPDATE %s SET isconvertedfromlead = ?,convertedfromlead = ? WHERE %s = ?;

-- name: denormalize_foreign_keys
-- include/integrations/denormalize/denormalize.php denormalizeModule: the module table's and
-- vtiger_seactivityrel's foreign keys to vtiger_crmentity dropped (each constraint_name found so)
SELECT constraint_name FROM information_schema.key_column_usage WHERE table_name=? and referenced_table_name='vtiger_crmentity' and constraint_schema=?;
-- name: denormalize_drop_key
ALTER TABLE %s DROP FOREIGN KEY %s;
-- name: denormalize_columns
-- ($descfield: the description column, unless the table has one)
ALTER TABLE %s
			ADD `crmid` INT( 19 ) NOT NULL DEFAULT 0 ,
			ADD `cbuuid` char(40) NULL DEFAULT NULL,
			ADD `smcreatorid` INT( 19 ) NOT NULL DEFAULT 0 ,
			ADD `smownerid` INT( 19 ) NOT NULL DEFAULT 0 ,
			ADD `modifiedby` INT( 19 ) NOT NULL DEFAULT 0 ,
			ADD `createdtime` datetime NULL DEFAULT NULL,
			ADD `modifiedtime` datetime NULL DEFAULT NULL,
			ADD `viewedtime` datetime NULL DEFAULT NULL,
			ADD `setype` varchar(100) NULL DEFAULT NULL,
			ADD `description` text NULL DEFAULT NULL,
			ADD `deleted` INT( 1 ) NOT NULL DEFAULT 0,
			ADD INDEX (`crmid`),
			ADD INDEX (`cbuuid`),
			ADD INDEX (`smcreatorid`),
			ADD INDEX (`modifiedby`),
			ADD INDEX (`deleted`),
			ADD INDEX (`smownerid`, `deleted`);
-- name: denormalize_fill
-- (cbuuid left out: the 2016 vtiger_crmentity has none)
UPDATE %s inner join vtiger_crmentity on vtiger_crmentity.crmid=%s set
			%s.crmid = vtiger_crmentity.crmid,
			%s.smcreatorid = vtiger_crmentity.smcreatorid,
			%s.smownerid = vtiger_crmentity.smownerid,
			%s.modifiedby = vtiger_crmentity.modifiedby,
			%s.createdtime = vtiger_crmentity.createdtime,
			%s.modifiedtime = vtiger_crmentity.modifiedtime,
			%s.viewedtime = vtiger_crmentity.viewedtime,
			%s.setype = vtiger_crmentity.setype,
			%s.description= vtiger_crmentity.description,
			%s.deleted = vtiger_crmentity.deleted;
-- name: denormalize_mark
UPDATE vtiger_entityname SET isdenormalized=?, denormtable=? WHERE vtiger_entityname.tabid=?;
-- name: denormalize_forget
DELETE FROM vtiger_crmentity WHERE setype=?;
